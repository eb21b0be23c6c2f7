"""A web node's side of realtime scoring: load models onto compute nodes and score on the Call stream.

Models travel by content hash. A publish loads the model on every healthy compute node
(which also validates it). A score goes to the least busy node; a node that does not
hold the model (restarted, added later) answers ServiceNotLoaded and gets the bytes from
the central store, once, before the request is retried there.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from common.errors import AppError, InvalidInput, ServiceNotLoaded, Unavailable, from_rpc_error
from common.pb import compute_pb2 as pb
from common.pb import realtime_pb2 as rpb
from common.pb import realtime_pb2_grpc as rpb_grpc
from webnode.compute.client import ADMIN_DEADLINE, NodeClient, NotDelivered
from webnode.compute.cluster import ComputeCluster
from webnode.store.realtime_models import ModelStore

logger = logging.getLogger(__name__)


def loaded_key(model_hash: str) -> str:
    """The mark in NodeClient.loaded (cleared when the node fails a health check)."""
    return f"realtime:{model_hash}"


class RealtimeDispatcher:
    def __init__(self, cluster: ComputeCluster, models: ModelStore) -> None:
        self._cluster = cluster
        self._models = models

    def _stub(self, client: NodeClient) -> rpb_grpc.RealtimeStub:
        return self._cluster.stubs(client.uri).realtime

    async def _load(self, client: NodeClient, model_hash: str, content: bytes) -> rpb.LoadModelReply:
        request = rpb.LoadModelRequest(model_hash=model_hash, content=content)
        try:
            reply: rpb.LoadModelReply = await self._stub(client).LoadModel(request, timeout=ADMIN_DEADLINE * 4)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise NotDelivered(f"the compute node is unavailable: {exc.details()}") from None
            raise from_rpc_error(exc) from None
        client.loaded.add(loaded_key(model_hash))
        return reply

    async def load_everywhere(self, model_hash: str, content: bytes) -> rpb.LoadModelReply:
        """Load (and so validate) a model on every healthy compute node; InvalidInput when it is bad."""
        candidates = self._cluster.candidates()
        if not candidates:
            raise Unavailable("no compute node is available to load the model")
        results = await asyncio.gather(
            *(self._load(s.client, model_hash, content) for s in candidates), return_exceptions=True
        )
        replies = [r for r in results if isinstance(r, rpb.LoadModelReply)]
        for result in results:
            if isinstance(result, InvalidInput):
                raise result
        if not replies:
            failure = next((r for r in results if isinstance(r, AppError)), None)
            if failure is not None:
                raise failure
            raise Unavailable("no compute node could load the model")
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, AppError):
                logger.warning("loading realtime model %s failed on a node: %r", model_hash[:12], result)
        return replies[0]

    async def describe(self, model_hash: str) -> rpb.LoadModelReply:
        """What a model takes and gives, from a compute node that holds it (loading it there if needed)."""
        candidates = self._cluster.candidates()
        if not candidates:
            raise Unavailable("no compute node is available")
        client = candidates[0].client
        try:
            return await self._load(client, model_hash, b"")
        except ServiceNotLoaded:
            return await self._load(client, model_hash, await self._models.get(model_hash))

    async def unload_everywhere(self, model_hash: str) -> None:
        async def unload(client: NodeClient) -> None:
            client.loaded.discard(loaded_key(model_hash))
            try:
                await self._stub(client).UnloadModel(rpb.UnloadModelRequest(model_hash=model_hash), timeout=5)
            except grpc.RpcError as exc:
                logger.info("could not unload realtime model %s: %s", model_hash[:12], exc.details())

        await asyncio.gather(*(unload(s.client) for s in self._cluster.candidates()))

    async def score(self, model_hash: str, body: bytes, timeout: float) -> bytes:
        """outputParameters JSON of one scoring request."""
        candidates = self._cluster.candidates()
        if not candidates:
            raise Unavailable("no compute node is available")
        last: AppError | None = None
        request = pb.CallRequest(score=pb.ScoreRequest(model_hash=model_hash, body_json=body))
        for state in candidates[:2]:
            client = state.client
            try:
                if loaded_key(model_hash) not in client.loaded:
                    await self._load(client, model_hash, await self._models.get(model_hash))
                try:
                    reply = await client.call(request, timeout)
                except ServiceNotLoaded:
                    client.loaded.discard(loaded_key(model_hash))
                    await self._load(client, model_hash, await self._models.get(model_hash))
                    reply = await client.call(request, timeout)
                return reply.scored.outputs_json
            except NotDelivered as exc:
                state.healthy = False
                state.error = exc.message
                client.loaded.clear()
                last = exc
        assert last is not None
        raise last
