"""A web node's way to the remote sessions: placement, routing, and the failure rules.

A new session goes to the healthy compute node with the fewest requests in flight; its
placement (id -> node URI, owner, runtime, name) is recorded in the central store, so
every web node routes its calls to the same node. Records are cached per web node and
dropped everywhere (coordination channel `sessions`) when a session closes.

When the node is unreachable or answers that the session (or its shell) is gone, the
call fails with Gone (410) and the record is removed. A background sweep asks each node
which sessions it still holds and removes records of sessions it closed on its own
(idle timeout, crashed shell), so `GET /sessions` does not list them for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from common.errors import ERROR_CODE_KEY, AppError, Gone, Timeout, Unavailable, from_rpc_error
from common.pb import compute_pb2 as pb
from common.pb import sessions_pb2 as spb
from common.pb import sessions_pb2_grpc as spb_grpc
from webnode.compute.client import NotDelivered
from webnode.compute.cluster import ComputeCluster
from webnode.coord.base import RESYNC, Coordinator
from webnode.store.sessions import SessionRecord, SessionStore
from webnode.store.snapshots import SnapshotStore

logger = logging.getLogger(__name__)
CHANNEL = "sessions"
STALE_SNAPSHOT_SECONDS = 6 * 3600  # far longer than writing any snapshot takes
RUNTIME_ENUM = {"Python": pb.PYTHON, "R": pb.R}
T = TypeVar("T")


def _node_gone(exc: grpc.RpcError) -> bool:
    """The node itself could not be reached (as opposed to an error it reported)."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    has_code = any(k == ERROR_CODE_KEY for k, _ in (trailing or ()))
    return not has_code and exc.code() == grpc.StatusCode.UNAVAILABLE


class SessionGateway:
    def __init__(
        self,
        store: SessionStore,
        snapshots: SnapshotStore,
        cluster: ComputeCluster,
        coordinator: Coordinator,
        *,
        idle_timeout: float,
        sweep_interval: float,
        call_timeout: float,
    ) -> None:
        self.store = store
        self._snapshots = snapshots
        self._cluster = cluster
        self._coordinator = coordinator
        self._idle_timeout = idle_timeout
        self._sweep_interval = sweep_interval
        self.call_timeout = call_timeout
        self._records: dict[str, SessionRecord] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._coordinator.subscribe(CHANNEL, self._on_message)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def _on_message(self, message: str) -> None:
        if message == RESYNC:
            self._records.clear()
        else:
            self._records.pop(message, None)

    def stub(self, uri: str) -> spb_grpc.SessionsStub:
        return self._cluster.sessions_stub(uri)

    # ------------------------------------------------------------------ records
    async def find(self, session_id: str, owner: str) -> SessionRecord:
        """The caller's session (NotFound for unknown ids and other users' sessions alike)."""
        record = self._records.get(session_id)
        if record is None:
            record = await self.store.get(session_id, owner)
            self._records[session_id] = record
        elif record.owner != owner:
            record = await self.store.get(session_id, owner)  # raises NotFound
        return record

    async def forget(self, record: SessionRecord) -> None:
        self._records.pop(record.id, None)
        await self.store.delete(record.id)
        await self._coordinator.publish(CHANNEL, record.id)

    # ------------------------------------------------------------------ calls
    async def create(self, owner: str, name: str, runtime: str) -> SessionRecord:
        candidates = self._cluster.candidates()
        if not candidates:
            raise Unavailable("no compute node is available")
        session_id = str(uuid.uuid4())
        request = spb.CreateSessionRequest(
            session_id=session_id, runtime=RUNTIME_ENUM[runtime], idle_timeout=self._idle_timeout
        )
        last: AppError = Unavailable("no compute node is available")
        for state in candidates[:2]:
            uri = state.client.uri
            try:
                await self.stub(uri).CreateSession(request, timeout=self.call_timeout)
            except grpc.RpcError as exc:
                last = from_rpc_error(exc)
                if _node_gone(exc):
                    state.healthy = False
                    continue
                if isinstance(last, Unavailable):
                    continue  # this node lacks the runtime or a free shell: try the next one
                raise last from None
            record = SessionRecord(id=session_id, owner=owner, name=name, runtime=runtime, node_uri=uri)
            try:
                await self.store.create(record)
            except BaseException:
                with contextlib.suppress(grpc.RpcError):
                    await self.stub(uri).CloseSession(spb.CloseSessionRequest(session_id=session_id, force=True))
                raise
            self._records[session_id] = record
            return record
        raise last

    async def call(self, record: SessionRecord, invoke: Callable[[spb_grpc.SessionsStub], Awaitable[T]]) -> T:
        """One call to the session's node; Gone (and the record removed) when the session is no more."""
        if record.node_uri not in self._cluster.nodes:
            await self.forget(record)
            raise Gone(f"session '{record.id}' is gone: its compute node was removed")
        try:
            return await invoke(self.stub(record.node_uri))
        except grpc.RpcError as exc:
            raise await self._translate(record, exc) from None

    async def execute(self, record: SessionRecord, call: pb.SessionExecute) -> pb.ExecutionResult:
        """Session execute on the node's multiplexed Call stream (the hot path; no unary call)."""
        state = self._cluster.nodes.get(record.node_uri)
        if state is None:
            await self.forget(record)
            raise Gone(f"session '{record.id}' is gone: its compute node was removed")
        try:
            reply = await state.client.call(pb.CallRequest(session_execute=call), self.call_timeout)
        except NotDelivered:
            await self.forget(record)
            raise Gone(f"session '{record.id}' is gone: its compute node cannot be reached") from None
        except Gone:
            await self.forget(record)
            raise
        except (Unavailable, Timeout) as exc:
            if isinstance(exc, Timeout) or await state.client.healthy():
                raise
            await self.forget(record)
            raise Gone(f"session '{record.id}' is gone: its compute node went away") from None
        return reply.result

    async def _translate(self, record: SessionRecord, exc: grpc.RpcError) -> AppError:
        error = from_rpc_error(exc)
        if _node_gone(exc):
            await self.forget(record)
            return Gone(f"session '{record.id}' is gone: its compute node cannot be reached")
        if isinstance(error, Gone):
            await self.forget(record)
        return error

    async def download(
        self, record: SessionRecord, open_stream: Callable[[spb_grpc.SessionsStub], Any]
    ) -> tuple[bytes, AsyncIterator[bytes]]:
        """Start a server stream of chunks; errors surface here, before the first chunk is returned."""
        if record.node_uri not in self._cluster.nodes:
            await self.forget(record)
            raise Gone(f"session '{record.id}' is gone: its compute node was removed")
        call = open_stream(self.stub(record.node_uri))
        try:
            first = await call.read()
        except grpc.RpcError as exc:
            raise await self._translate(record, exc) from None
        if first is grpc.aio.EOF:
            return b"", _empty()

        async def rest() -> AsyncIterator[bytes]:
            try:
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    yield chunk.data
            except grpc.RpcError as exc:
                raise await self._translate(record, exc) from None
            finally:
                call.cancel()

        return first.data, rest()

    # ------------------------------------------------------------------ sweep
    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
            except AppError as exc:
                logger.warning("session sweep failed: %s", exc.message)

    async def sweep(self) -> None:
        """Remove records of sessions their (reachable) node no longer holds, and abandoned snapshots."""
        stale = await self._snapshots.delete_stale(time.time() - STALE_SNAPSHOT_SECONDS)
        if stale:
            logger.info("removed %d snapshot(s) left unfinished by a web node that stopped", stale)
        records = await self.store.list()
        by_node: dict[str, list[SessionRecord]] = {}
        for record in records:
            by_node.setdefault(record.node_uri, []).append(record)
        for uri, placed in by_node.items():
            if uri not in self._cluster.nodes:
                continue
            try:
                reply = await self.stub(uri).ListSessions(spb.ListSessionsRequest(), timeout=5)
            except grpc.RpcError:
                continue  # unreachable now: calls on its sessions will answer 410
            live = set(reply.session_ids)
            for record in placed:
                if record.id not in live:
                    logger.info("session %s is no longer on %s; removing its record", record.id, uri)
                    await self.forget(record)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover
