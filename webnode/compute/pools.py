"""Dedicated pools on the compute nodes, reconciled with the central store.

The store (`service_pools`) says which service versions have a dedicated pool and its
sizes. Every web node runs a reconciler: for each reachable compute node it lists the
node's pools and sets or deletes what differs (a patched definition, new sizes, a pool
of a deleted service). So a compute node that joins the list later, or restarts and
comes back empty, gets its pools within one interval, and the web nodes need not agree
on who pushes. A change made through the API triggers a pass at once (on every web node,
through the coordination channel). A service's snapshot is put in the node's cache before
its pool is set there (the pool's shells restore it as they start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc

from common.errors import AppError, NotFound, from_rpc_error
from common.pb import compute_pb2 as pb
from common.pb import pools_pb2 as ppb
from common.pb import pools_pb2_grpc as ppb_grpc
from webnode.compute.cluster import ComputeCluster, NodeState
from webnode.coord.base import Coordinator
from webnode.service_cache import CHANNEL as SERVICES_CHANNEL
from webnode.service_cache import ServiceCache
from webnode.store.pools import ServicePool, ServicePoolStore

logger = logging.getLogger(__name__)
CHANNEL = "servicepools"
RPC_DEADLINE = 30.0
SNAPSHOT_DEADLINE = 600.0  # sending a service's snapshot (hundreds of MB) to a node's cache
SUCCESS, PENDING, NOT_FOUND = "Success", "Pending", "NotFound"


@dataclass(frozen=True)
class Wanted:
    pool: ServicePool
    definition: pb.ServiceDefinition


class PoolSync:
    def __init__(
        self,
        store: ServicePoolStore,
        services: ServiceCache,
        cluster: ComputeCluster,
        coordinator: Coordinator,
        *,
        interval: float,
        owner: str,
    ) -> None:
        self.store = store
        self.owner = owner
        self._services = services
        self._cluster = cluster
        self._coordinator = coordinator
        self._interval = interval
        self._now = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._coordinator.subscribe(CHANNEL, lambda _message: self._now.set())
        self._coordinator.subscribe(SERVICES_CHANNEL, lambda _message: self._now.set())
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def changed(self) -> None:
        """Call after the store changed: reconcile now, here and on the other web nodes."""
        await self.sync()
        await self._coordinator.publish(CHANNEL, "changed")

    # ------------------------------------------------------------------ status
    async def status(self, name: str, version: str) -> list[dict[str, str]]:
        """[{"ComputeNodeEndpoint", "Status"}] for every compute node in the list."""
        wanted = await self.store.get(name, version)
        key = (await self._services.get(name, version)).definition.key if wanted else ""
        states = list(self._cluster.nodes.values())
        codes = await asyncio.gather(*(self._node_status(s, f"{name}/{version}", key) for s in states))
        return [{"ComputeNodeEndpoint": s.client.uri, "Status": code} for s, code in zip(states, codes, strict=True)]

    async def _node_status(self, state: NodeState, sid: str, key: str) -> str:
        if not key:
            return NOT_FOUND
        try:
            reply = await self._stub(state.client.uri).ListServicePools(ppb.ListServicePoolsRequest(), timeout=3)
        except grpc.RpcError:
            return PENDING  # unreachable: it gets the pool when it is back
        have = next((p for p in reply.pools if p.service_id == sid and p.owner == self.owner), None)
        return SUCCESS if have is not None and have.ready and have.service_key == key else PENDING

    # ------------------------------------------------------------------ reconciling
    async def sync(self) -> None:
        async with self._lock:
            wanted = await self._wanted()
            states = [s for s in self._cluster.nodes.values() if s.healthy is not False]
            await asyncio.gather(*(self._sync_node(s, wanted) for s in states))

    async def _wanted(self) -> dict[str, Wanted]:
        wanted: dict[str, Wanted] = {}
        for pool in await self.store.list():
            try:
                entry = await self._services.get(pool.name, pool.version)
            except NotFound:
                entry = None
            if entry is None or entry.service.created_at != pool.service_created_at:
                # The service was deleted (perhaps republished since): its pool goes with it.
                await self.store.delete(pool.name, pool.version)
                continue
            wanted[pool.service_id] = Wanted(pool, entry.definition)
        return wanted

    async def _sync_node(self, state: NodeState, wanted: dict[str, Wanted]) -> None:
        uri = state.client.uri
        stub = self._stub(uri)
        try:
            reply = await stub.ListServicePools(ppb.ListServicePoolsRequest(), timeout=5)
            have = {p.service_id: p for p in reply.pools if p.owner == self.owner}
            for sid, want in wanted.items():
                current = have.get(sid)
                if (
                    current is None
                    or current.service_key != want.definition.key
                    or current.initial_size != want.pool.initial_size
                    or current.figures.max_size != want.pool.max_size
                ):
                    if want.definition.snapshot_id:  # the pool's shells restore it as they start
                        await self._cluster.cache_snapshot(uri, want.definition.snapshot_id, SNAPSHOT_DEADLINE)
                    await stub.SetServicePool(
                        ppb.SetServicePoolRequest(
                            service=want.definition,
                            initial_size=want.pool.initial_size,
                            max_size=want.pool.max_size,
                            owner=self.owner,
                        ),
                        timeout=RPC_DEADLINE,
                    )
            for sid in have.keys() - wanted.keys():
                await stub.DeleteServicePool(ppb.DeleteServicePoolRequest(service_id=sid), timeout=RPC_DEADLINE)
        except (grpc.RpcError, AppError) as exc:
            error = from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else exc
            logger.debug("could not reconcile the dedicated pools of %s: %s", uri, error.message)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._now.wait(), self._interval)
            self._now.clear()
            try:
                await self.sync()
            except AppError as exc:
                logger.warning("could not reconcile dedicated pools: %s", exc.message)

    def _stub(self, uri: str) -> ppb_grpc.PoolsStub:
        return self._cluster.stubs(uri).pools
