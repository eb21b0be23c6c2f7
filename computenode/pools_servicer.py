"""The Pools gRPC service: dedicated pools per service version, applied as the web nodes say."""

from __future__ import annotations

import grpc

from common.pb import pools_pb2 as ppb
from common.pb import pools_pb2_grpc as ppb_grpc
from computenode.dedicated_pools import DedicatedPools


class PoolsServicer(ppb_grpc.PoolsServicer):
    def __init__(self, pools: DedicatedPools) -> None:
        self._pools = pools

    async def SetServicePool(
        self, request: ppb.SetServicePoolRequest, context: grpc.aio.ServicerContext
    ) -> ppb.ServicePoolState:
        pool = await self._pools.apply(request.service, request.initial_size, request.max_size, request.owner)
        return pool.state()

    async def DeleteServicePool(
        self, request: ppb.DeleteServicePoolRequest, context: grpc.aio.ServicerContext
    ) -> ppb.DeleteServicePoolReply:
        return ppb.DeleteServicePoolReply(existed=await self._pools.remove(request.service_id))

    async def ListServicePools(
        self, request: ppb.ListServicePoolsRequest, context: grpc.aio.ServicerContext
    ) -> ppb.ListServicePoolsReply:
        return ppb.ListServicePoolsReply(pools=self._pools.states())
