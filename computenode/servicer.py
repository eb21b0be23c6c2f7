"""The gRPC servicer: thin methods that decode, delegate to the domain objects, encode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import grpc

from common.errors import AppError, Internal
from common.pb import compute_pb2 as pb
from common.pb import compute_pb2_grpc as pb_grpc
from computenode.pools import ShellPool
from computenode.realtime import RealtimeModels
from computenode.services import ServiceRegistry
from computenode.sessions import SessionRegistry

logger = logging.getLogger(__name__)
API_VERSION = "1.0"
REPLY_BATCH_MAX = 64
_RUNTIME_ENUM = {"python": pb.PYTHON, "r": pb.R}


def error_message(exc: BaseException) -> pb.Error:
    """The stream edge of the error model: one AppError -> one Error message."""
    if isinstance(exc, AppError):
        return pb.Error(code=exc.code, message=exc.message, field=exc.field)
    logger.exception("unexpected error while serving a call", exc_info=exc)
    return pb.Error(code=Internal.code, message="internal error on the compute node")


class _StreamProgress:
    """Progress notices of one request on its Call stream (see `Progress` in compute.proto)."""

    def __init__(
        self, request_id: int, replies: asyncio.Queue[pb.CallReply | None], written: dict[int, asyncio.Future[None]]
    ) -> None:
        self._id = request_id
        self._replies = replies
        self._written = written

    def queued(self) -> None:
        self._replies.put_nowait(pb.CallReply(id=self._id, progress=pb.Progress(stage=pb.Progress.QUEUED)))

    async def started(self) -> None:
        # The code must not run before the web node knows it does: from then on it must not retry.
        future = self._written[self._id] = asyncio.get_running_loop().create_future()
        self._replies.put_nowait(pb.CallReply(id=self._id, progress=pb.Progress(stage=pb.Progress.STARTED)))
        await future


def _take_ready(replies: asyncio.Queue[pb.CallReply | None], batch: list[pb.CallReply]) -> bool:
    """Move the replies already queued into `batch`; True when the stream's end was among them."""
    while not replies.empty():
        more = replies.get_nowait()
        if more is None:
            return True
        batch.append(more)
    return False


def _mark_sent(batch: list[pb.CallReply], written: dict[int, asyncio.Future[None]]) -> None:
    """Resolve the STARTED notices of `batch`, now handed to the stream."""
    for sent in batch:
        future = written.pop(sent.id, None) if sent.WhichOneof("kind") == "progress" else None
        if future is not None and not future.done():
            future.set_result(None)


Answer = Callable[[pb.CallRequest, "_StreamProgress"], Awaitable[pb.CallReply]]


class _CallStream:
    """The requests of one Call stream: each runs as a task and queues its reply."""

    def __init__(self, answer: Answer, registry: ServiceRegistry) -> None:
        self._answer = answer
        self._registry = registry
        self.replies: asyncio.Queue[pb.CallReply | None] = asyncio.Queue()  # None: the stream ended
        self.written: dict[int, asyncio.Future[None]] = {}  # STARTED notices, resolved once sent
        self.owed = 0  # requests received whose reply is not yet queued
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, request_iterator: AsyncIterator[pb.CallBatch]) -> None:
        try:
            async for batch in request_iterator:
                self.owed += len(batch.calls)
                # Requests of one service version in one message run together (execute_many).
                services: dict[str, list[pb.CallRequest]] = {}
                for request in batch.calls:
                    if request.WhichOneof("kind") == "execute_service":
                        services.setdefault(request.execute_service.service_key, []).append(request)
                    else:
                        self._spawn(self._handle(request))
                for same in services.values():
                    self._spawn(self._handle(same[0]) if len(same) == 1 else self._handle_service(same))
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.replies.put_nowait(None)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _progress(self, request: pb.CallRequest) -> _StreamProgress:
        return _StreamProgress(request.id, self.replies, self.written)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply(self, reply: pb.CallReply) -> None:
        self.owed -= 1
        self.replies.put_nowait(reply)

    async def _handle(self, request: pb.CallRequest) -> None:
        try:
            reply = await self._answer(request, self._progress(request))
        except Exception as exc:
            reply = pb.CallReply(id=request.id, error=error_message(exc))
        self._reply(reply)

    async def _handle_service(self, requests: list[pb.CallRequest]) -> None:
        def deliver(index: int, outcome: pb.ExecutionResult | Exception) -> None:
            request_id = requests[index].id
            if isinstance(outcome, Exception):
                self._reply(pb.CallReply(id=request_id, error=error_message(outcome)))
            else:
                self._reply(pb.CallReply(id=request_id, result=outcome))

        await self._registry.execute_many(
            [r.execute_service for r in requests], [self._progress(r) for r in requests], deliver
        )


class ComputeServicer(pb_grpc.ComputeServicer):
    def __init__(
        self,
        *,
        node_id: str,
        pools: dict[str, ShellPool],
        unavailable: dict[str, str],
        registry: ServiceRegistry,
        log_path: str,
        realtime: RealtimeModels | None = None,
        sessions: SessionRegistry | None = None,
        reply_hold: float = 0.0,
    ) -> None:
        self._node_id = node_id
        self._reply_hold = reply_hold
        self._pools = pools
        self._unavailable = unavailable
        self._registry = registry
        self._log_path = log_path
        self._realtime = realtime
        self._sessions = sessions

    async def Call(
        self, request_iterator: AsyncIterator[pb.CallBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ReplyBatch]:
        stream = _CallStream(self._answer, self._registry)
        reader = asyncio.get_running_loop().create_task(stream.read(request_iterator))
        replies, written = stream.replies, stream.written
        try:
            while (reply := await replies.get()) is not None:
                # Every reply that is ready goes out as one message. While other requests of the
                # stream are still running, the next replies are awaited for up to `reply_hold`:
                # a message costs both nodes far more CPU than one more reply in it.
                batch = [reply]
                end = _take_ready(replies, batch)
                if not end and not written and stream.owed and self._reply_hold > 0:
                    end = await self._gather(stream, batch)
                yield pb.ReplyBatch(replies=batch)
                if written:
                    _mark_sent(batch, written)
                if end:
                    return
        finally:
            reader.cancel()
            stream.cancel()

    async def _gather(self, stream: _CallStream, batch: list[pb.CallReply]) -> bool:
        """Add replies to `batch` while requests of the stream still owe one, for at most
        `reply_hold` seconds, and none waits for its STARTED notice to go out; True when the
        stream ended."""
        deadline = asyncio.get_running_loop().time() + self._reply_hold
        replies = stream.replies
        while len(batch) < REPLY_BATCH_MAX and stream.owed and not stream.written:
            try:
                async with asyncio.timeout_at(deadline):
                    more = await replies.get()
            except TimeoutError:
                return False
            if more is None:
                return True
            batch.append(more)
            if _take_ready(replies, batch):
                return True
        return False

    async def _answer(self, request: pb.CallRequest, progress: _StreamProgress) -> pb.CallReply:
        kind = request.WhichOneof("kind")
        if kind == "execute_service":
            result = await self._registry.execute(request.execute_service, progress)
            return pb.CallReply(id=request.id, result=result)
        if kind == "session_execute" and self._sessions is not None:
            call = request.session_execute
            result = await self._sessions.execute_result(
                call.session_id, call.code, call.inputs_json, list(call.output_names)
            )
            return pb.CallReply(id=request.id, result=result)
        if kind == "score" and self._realtime is not None:
            return pb.CallReply(id=request.id, scored=await self._realtime.score(request.score))
        return pb.CallReply(id=request.id, error=pb.Error(code="invalid_input", message="empty call"))

    async def LoadService(
        self, request: pb.LoadServiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoadServiceReply:
        self._registry.load(request.service)
        return pb.LoadServiceReply()

    async def UnloadService(
        self, request: pb.UnloadServiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnloadServiceReply:
        self._registry.unload(request.service_key)
        return pb.UnloadServiceReply()

    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.NodeStatus:
        pools = []
        for runtime, enum in _RUNTIME_ENUM.items():
            pool = self._pools.get(runtime)
            if pool is None:
                pools.append(
                    pb.PoolStatus(
                        runtime=enum, can_open_shell=False, unavailable_reason=self._unavailable.get(runtime, "")
                    )
                )
                continue
            f = pool.figures()
            pools.append(
                pb.PoolStatus(
                    runtime=enum,
                    max_size=f.max_size,
                    current_size=f.current_size,
                    active=f.active,
                    idle=f.idle,
                    queued=f.queued,
                    can_open_shell=f.current_size < f.max_size or f.idle > 0,
                )
            )
        return pb.NodeStatus(
            api_version=API_VERSION,
            node_id=self._node_id,
            pools=pools,
            loaded_services=len(self._registry),
            log_path=self._log_path,
            service_pools=[state.figures for state in self._registry.dedicated.states()],
        )
