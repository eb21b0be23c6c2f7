"""A web node's connection to one compute node.

One gRPC channel per node; service executions travel over a long-lived `Call` stream
(O16N_COMPUTE_STREAMS of them) multiplexing many requests by id, so a request costs at most
one stream message each way instead of a whole unary call, and requests queued together
share one (the fewer streams, the more share). Requests over BULK_BYTES go on a stream of
their own. If a stream breaks, its pending requests fail
with Unavailable (503), except those the node reported as still waiting for a shell (they
never ran: NotDelivered, which the cluster sends to another node), and the next request opens
a new stream. Unary RPCs carry administration (load a service, status), each with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import AppError, Timeout, Unavailable, from_code, from_rpc_error
from common.pb import compute_pb2 as pb
from common.pb import compute_pb2_grpc as pb_grpc
from webnode.compute.channels import ChannelFactory

logger = logging.getLogger(__name__)
ADMIN_DEADLINE = 30.0
# Requests larger than this travel on a stream of their own: on the shared streams, messages go
# out one after another, and a large one would hold back the small ones queued behind it.
BULK_BYTES = 64 * 1024


def grpc_target(uri: str) -> str:
    """`http://host:port/` (ML Server's form) or `host:port` -> a gRPC target."""
    target = uri.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
    return target.rstrip("/")


class NotDelivered(Unavailable):
    """The request never reached the compute node (it can be sent to another node)."""


def _not_delivered(exc: grpc.RpcError) -> bool:
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    return "failed to connect" in details.lower() or "connection refused" in details.lower()


class _Expired(Exception):
    """A call's deadline passed before its reply came."""


def _expire(future: asyncio.Future[pb.CallReply]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class _Stream:
    """One bidirectional Call stream and the requests waiting on it."""

    def __init__(self, stub: pb_grpc.ComputeStub, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._call = stub.Call(metadata=metadata or None)
        self._pending: dict[int, asyncio.Future[pb.CallReply]] = {}
        self._queued: set[int] = set()  # reported waiting for a shell: never ran
        self._outbox: list[pb.CallRequest] = []
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def load(self) -> int:
        return len(self._pending)

    def send(self, request: pb.CallRequest) -> asyncio.Future[pb.CallReply]:
        """Queue `request`; requests queued while a write is in flight go out together as one batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[pb.CallReply] = loop.create_future()
        self._pending[request.id] = future
        self._outbox.append(request)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        # One more pass of the event loop first: requests whose handlers run in it join this
        # batch. Measured at concurrency 8 (x + y): 17% less CPU per request on the web and
        # compute nodes and in the shells (bigger batches, longer runs), the same req/s.
        await asyncio.sleep(0)
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                await self._call.write(pb.CallBatch(calls=batch))
            except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
                undelivered = NotDelivered(f"the compute node is unavailable: {exc}")
                for request in [*batch, *self._outbox]:
                    future = self._pending.pop(request.id, None)
                    if future is not None and not future.done():
                        future.set_exception(NotDelivered(undelivered.message))
                self._outbox.clear()
                self._fail(exc)
                return

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)
        self._queued.discard(request_id)

    async def _read(self) -> None:
        try:
            async for batch in self._call:
                for reply in batch.replies:
                    if reply.WhichOneof("kind") == "progress":
                        if reply.progress.stage == pb.Progress.QUEUED:
                            self._queued.add(reply.id)
                        else:
                            self._queued.discard(reply.id)
                        continue
                    self._queued.discard(reply.id)
                    future = self._pending.pop(reply.id, None)
                    if future is not None and not future.done():
                        future.set_result(reply)
            self._fail(None)
        except grpc.RpcError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(None)
            raise

    def _fail(self, exc: BaseException | None) -> None:
        self.closed = True
        error: AppError = (
            from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else Unavailable("the compute node went away")
        )
        if isinstance(exc, grpc.RpcError) and _not_delivered(exc):
            error = NotDelivered(f"the compute node is unavailable: {error.message}")
        elif not isinstance(error, Unavailable | Timeout):
            error = Unavailable(f"the compute node is unavailable: {error.message}")
        for request_id, future in self._pending.items():
            if future.done():
                continue
            if request_id in self._queued:  # it never reached a shell: another node may run it
                future.set_exception(NotDelivered(f"the compute node went away before running it: {error.message}"))
            else:
                future.set_exception(type(error)(error.message))
        self._pending.clear()
        self._queued.clear()

    async def close(self) -> None:
        self.closed = True
        self._call.cancel()
        self._reader.cancel()
        if self._writer is not None:
            self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
            await self._reader


class NodeClient:
    def __init__(self, uri: str, *, streams: int = 1, channels: ChannelFactory | None = None) -> None:
        self.uri = uri
        self.target = grpc_target(uri)
        channels = channels or ChannelFactory()
        self._metadata = channels.metadata()
        # The secret goes on each call explicitly: an interceptor would slow the Call stream down.
        self._channel = channels.open(self.target, intercept=False, max_message=1 << 30)
        self._stub = pb_grpc.ComputeStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._streams: list[_Stream | None] = [None] * max(1, streams)
        self._bulk: _Stream | None = None  # requests over BULK_BYTES: they must not hold small ones back
        self._ids = itertools.count(1)
        self.loaded: set[str] = set()  # service keys this node is known to hold

    @property
    def inflight(self) -> int:
        return sum(s.load for s in [*self._streams, self._bulk] if s is not None and not s.closed)

    def _stream(self, size: int) -> _Stream:
        if size > BULK_BYTES:
            if self._bulk is None or self._bulk.closed:
                self._bulk = _Stream(self._stub, self._metadata)
            return self._bulk
        best_index, best = 0, None
        for index, stream in enumerate(self._streams):
            if stream is None or stream.closed:
                stream = self._streams[index] = _Stream(self._stub, self._metadata)
            if best is None or stream.load < best.load:
                best_index, best = index, stream
        assert best is not None
        del best_index
        return best

    async def call(self, request: pb.CallRequest, timeout: float) -> pb.CallReply:
        request.id = next(self._ids)
        stream = self._stream(request.ByteSize())
        future = stream.send(request)
        # A timer on the future itself: cheaper than wait_for, which wraps it (the hot path).
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            reply = await future
        except _Expired:
            stream.forget(request.id)
            raise Timeout(f"the compute node did not answer within {timeout:g} seconds") from None
        finally:
            timer.cancel()
        if reply.WhichOneof("kind") == "error":
            raise from_code(reply.error.code, reply.error.message, reply.error.field)
        return reply

    async def execute_service(self, key: str, inputs_json: bytes, timeout: float) -> pb.ExecutionResult:
        request = pb.CallRequest(execute_service=pb.ExecuteServiceRequest(service_key=key, inputs_json=inputs_json))
        reply = await self.call(request, timeout)
        return reply.result

    async def _unary(self, method: Any, request: Any, timeout: float = ADMIN_DEADLINE) -> Any:
        try:
            return await method(request, timeout=timeout, metadata=self._metadata or None)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                # Administrative calls are idempotent: the caller may try another node.
                raise NotDelivered(f"the compute node is unavailable: {exc.details()}") from None
            raise from_rpc_error(exc) from None

    async def load_service(self, definition: pb.ServiceDefinition) -> None:
        await self._unary(self._stub.LoadService, pb.LoadServiceRequest(service=definition))
        self.loaded.add(definition.key)

    async def unload_service(self, key: str) -> None:
        self.loaded.discard(key)
        await self._unary(self._stub.UnloadService, pb.UnloadServiceRequest(service_key=key))

    async def status(self, timeout: float = 5.0) -> pb.NodeStatus:
        status: pb.NodeStatus = await self._unary(self._stub.GetStatus, pb.GetStatusRequest(), timeout)
        return status

    async def healthy(self, timeout: float = 2.0) -> bool:
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout, metadata=self._metadata or None
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        for stream in [*self._streams, self._bulk]:
            if stream is not None:
                await stream.close()
        await self._channel.close()
