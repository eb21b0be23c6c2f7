"""The compute nodes a web node routes to: the central list, health checks, placement.

The list lives in the store (`compute_nodes`); a change made on any web node is
broadcast on the `computenodes` channel and every web node reloads it (with a periodic
re-read as a safety net). Health checks run in the background; placement picks the
healthy node with the fewest requests in flight. A service carrying a snapshot is loaded on
a node only after the node has the snapshot's zip cached (sent from the store if it lacks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

import grpc

from common.errors import AppError, PoolExhausted, ServiceNotLoaded, Unavailable, from_rpc_error
from common.pb import compute_pb2 as pb
from common.pb import pools_pb2_grpc as ppb_grpc
from common.pb import realtime_pb2_grpc as rpb_grpc
from common.pb import sessions_pb2_grpc as spb_grpc
from webnode.compute import uris
from webnode.compute.channels import ChannelFactory
from webnode.compute.client import NodeClient, NotDelivered, grpc_target
from webnode.compute.snapshots import cache_snapshot
from webnode.coord.base import Coordinator
from webnode.store.config import ConfigStore
from webnode.store.snapshots import SnapshotStore

logger = logging.getLogger(__name__)
COMPUTE_NODES = "compute_nodes"
CHANNEL = "computenodes"


@dataclass(frozen=True)
class NodeStubs:
    """One channel to a compute node for everything but the Call stream (NodeClient's own), and
    the stubs of its administrative services. Large messages allowed: model and snapshot uploads."""

    channel: grpc.aio.Channel
    sessions: spb_grpc.SessionsStub
    pools: ppb_grpc.PoolsStub
    realtime: rpb_grpc.RealtimeStub

    @classmethod
    def open(cls, channels: ChannelFactory, uri: str) -> NodeStubs:
        channel = channels.open(grpc_target(uri), max_message=1 << 30)
        return cls(
            channel,
            spb_grpc.SessionsStub(channel),  # type: ignore[no-untyped-call]
            ppb_grpc.PoolsStub(channel),  # type: ignore[no-untyped-call]
            rpb_grpc.RealtimeStub(channel),  # type: ignore[no-untyped-call]
        )


@dataclass
class NodeState:
    client: NodeClient
    healthy: bool | None = None  # None: not checked yet
    error: str = ""


class ComputeCluster:
    def __init__(
        self,
        config: ConfigStore,
        coordinator: Coordinator,
        *,
        health_interval: float,
        streams: int,
        reload_interval: float = 30.0,
        channels: ChannelFactory | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self._config = config
        self._coordinator = coordinator
        self._interval = health_interval
        self._streams = streams
        self._reload_interval = reload_interval
        self.channels = channels or ChannelFactory()  # open every channel to a compute node with this
        self.snapshots = snapshots
        self.nodes: dict[str, NodeState] = {}
        self._stubs: dict[str, NodeStubs] = {}  # by node URI, also of nodes that left the list
        self._caching: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_now = asyncio.Event()

    async def start(self, seed: list[str]) -> None:
        if seed:
            valid = []
            for entry in seed:
                try:
                    valid.append(uris.parse(entry).text)
                except AppError as exc:
                    logger.error("ignoring O16N_COMPUTE_NODES entry: %s", exc.message)
            await self._config.set_if_absent(COMPUTE_NODES, uris.unique(valid))
        await self.reload()
        self._coordinator.subscribe(CHANNEL, lambda _message: self._reload_now.set())
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._health_loop()), loop.create_task(self._reload_loop())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(n.client.close() for n in self.nodes.values()), return_exceptions=True)
        self.nodes.clear()
        await asyncio.gather(*(stubs.channel.close() for stubs in self._stubs.values()), return_exceptions=True)
        self._stubs.clear()

    def stubs(self, uri: str) -> NodeStubs:
        """The Sessions, Pools and Realtime services of node `uri`, over one channel per node.

        Kept for nodes that left the list too: their sessions are still addressed by URI."""
        stubs = self._stubs.get(uri)
        if stubs is None:
            stubs = self._stubs[uri] = NodeStubs.open(self.channels, uri)
        return stubs

    def sessions_stub(self, uri: str) -> spb_grpc.SessionsStub:
        """The Sessions service of a node (sessions, and the snapshot cache)."""
        return self.stubs(uri).sessions

    async def cache_snapshot(self, uri: str, snapshot_id: str, timeout: float) -> None:
        """Make sure node `uri` has the snapshot cached (a service's own copy) before it loads the service.

        NotDelivered when the node cannot be reached (another node may take the request).
        """
        # One transfer per node and snapshot, however many first requests arrive together.
        key = (uri, snapshot_id)
        task = self._caching.get(key)
        if task is None:
            task = self._caching[key] = asyncio.ensure_future(self._send_snapshot(uri, snapshot_id, timeout))
            task.add_done_callback(lambda done: self._sent(key, done))
        await asyncio.shield(task)

    def _sent(self, key: tuple[str, str], done: asyncio.Future[None]) -> None:
        if self._caching.get(key) is done:
            del self._caching[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have been cancelled meanwhile

    async def _send_snapshot(self, uri: str, snapshot_id: str, timeout: float) -> None:
        if self.snapshots is None:
            raise Unavailable("this web node cannot send snapshots to compute nodes")
        started = time.monotonic()
        try:
            sent = await cache_snapshot(self.sessions_stub(uri), self.snapshots, snapshot_id, timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise NotDelivered(f"the compute node is unavailable: {exc.details()}") from None
            raise from_rpc_error(exc) from None
        if sent:
            logger.info("snapshot %s sent to %s in %.2f s", snapshot_id, uri, time.monotonic() - started)

    async def load_service(self, client: NodeClient, definition: pb.ServiceDefinition, timeout: float) -> None:
        """Load a service on a node, its snapshot (if any) sent to the node's cache first."""
        if definition.snapshot_id:
            await self.cache_snapshot(client.uri, definition.snapshot_id, timeout)
        await client.load_service(definition)

    # ------------------------------------------------------------------ the list
    async def entries(self) -> list[str]:
        return list((await self._config.get(COMPUTE_NODES)) or [])

    async def set_entries(self, entries: list[str]) -> None:
        await self._config.set(COMPUTE_NODES, entries)
        await self.reload()
        await self._coordinator.publish(CHANNEL, "changed")

    async def reload(self) -> None:
        """Apply the stored list: ranges expand, names resolve (again) to all their addresses."""
        wanted = await uris.expand(await self.entries())
        for uri in [u for u in self.nodes if u not in wanted]:
            state = self.nodes.pop(uri)
            logger.info("compute node %s left the list", uri)
            await state.client.close()
        for uri in wanted:
            if uri not in self.nodes:
                logger.info("compute node %s joined the list", uri)
                self.nodes[uri] = NodeState(NodeClient(uri, streams=self._streams, channels=self.channels))

    async def _reload_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_now.wait(), self._reload_interval)
            self._reload_now.clear()
            try:
                await self.reload()
            except AppError as exc:
                logger.warning("could not reload the compute node list: %s", exc.message)
            except Exception:  # the store being down must not end the loop
                logger.exception("could not reload the compute node list")

    # ------------------------------------------------------------------ health
    async def _health_loop(self) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(self._interval)

    async def check_health(self) -> None:
        async def check(state: NodeState) -> None:
            ok = await state.client.healthy()
            if ok != state.healthy:
                logger.log(
                    logging.INFO if ok else logging.WARNING,
                    "compute node %s is %s",
                    state.client.uri,
                    "healthy" if ok else "unreachable",
                )
            state.healthy = ok
            state.error = "" if ok else "health check failed"
            if not ok:
                state.client.loaded.clear()

        await asyncio.gather(*(check(s) for s in list(self.nodes.values())))

    # ------------------------------------------------------------------ placement
    def candidates(self) -> list[NodeState]:
        states = list(self.nodes.values())
        healthy = [s for s in states if s.healthy is not False]
        random.shuffle(healthy)
        return sorted(healthy, key=lambda s: s.client.inflight)

    async def execute_service(
        self, definition: pb.ServiceDefinition, inputs_json: bytes, timeout: float
    ) -> pb.ExecutionResult:
        candidates = self.candidates()
        if not candidates:
            raise Unavailable("no compute node is available")
        last: AppError | None = None
        for state in candidates[:2]:
            client = state.client
            try:
                if definition.key not in client.loaded:
                    await self.load_service(client, definition, timeout)
                try:
                    return await client.execute_service(definition.key, inputs_json, timeout)
                except ServiceNotLoaded:
                    await self.load_service(client, definition, timeout)
                    return await client.execute_service(definition.key, inputs_json, timeout)
            except NotDelivered as exc:
                # Never reached the node: safe to send to the next one.
                state.healthy = False
                state.error = exc.message
                client.loaded.clear()
                last = exc
            except PoolExhausted as exc:
                # Reached the node but no shell (all busy, or the node is shutting down): the code
                # never ran, so the next node may take it; the node itself stays in rotation.
                last = exc
        assert last is not None
        raise last
