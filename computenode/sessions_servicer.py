"""The Sessions gRPC servicer: thin methods over SessionRegistry; streams move ~1 MiB chunks.

Unary methods raise AppError and the ErrorInterceptor turns it into a status; the
streaming methods do the same translation themselves (`_abort`), before their first chunk
when they can, so the web node learns about a missing file before it starts a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from common.errors import ERROR_CODE_KEY, ERROR_FIELD_KEY, AppError, InvalidInput, grpc_status_for
from common.pb import compute_pb2 as pb
from common.pb import sessions_pb2 as spb
from common.pb import sessions_pb2_grpc as spb_grpc
from computenode.services import RUNTIME_NAMES
from computenode.sessions import CHUNK, SessionRegistry, check_file_name


async def _abort(context: grpc.aio.ServicerContext, exc: AppError) -> None:
    context.set_trailing_metadata(((ERROR_CODE_KEY, exc.code), (ERROR_FIELD_KEY, exc.field)))
    await context.abort(grpc_status_for(exc), exc.message)


def _read_chunk(f: object, size: int) -> bytes:
    data: bytes = f.read(size)  # type: ignore[attr-defined]
    return data


async def _file_chunks(path: Path) -> AsyncIterator[spb.Chunk]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while data := await asyncio.to_thread(_read_chunk, f, CHUNK):
            yield spb.Chunk(data=data)
    finally:
        f.close()


async def _receive_to(path: Path, first: bytes, rest: AsyncIterator[bytes]) -> int:
    """Write `first` then every chunk of `rest` to `path`; removes the file if the stream fails."""
    f = await asyncio.to_thread(open, path, "wb")
    size = 0
    try:
        if first:
            await asyncio.to_thread(f.write, first)
            size += len(first)
        async for data in rest:
            await asyncio.to_thread(f.write, data)
            size += len(data)
    except BaseException:
        f.close()
        path.unlink(missing_ok=True)
        raise
    f.close()
    return size


class SessionsServicer(spb_grpc.SessionsServicer):
    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    # ------------------------------------------------------------------ lifecycle
    async def CreateSession(
        self, request: spb.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> spb.CreateSessionReply:
        runtime = RUNTIME_NAMES.get(request.runtime)
        if runtime is None:
            raise InvalidInput(f"unsupported runtime {request.runtime}")
        await self._registry.create(request.session_id, runtime, request.idle_timeout)
        return spb.CreateSessionReply()

    async def CloseSession(
        self, request: spb.CloseSessionRequest, context: grpc.aio.ServicerContext
    ) -> spb.CloseSessionReply:
        await self._registry.close_session(request.session_id, force=request.force)
        return spb.CloseSessionReply()

    async def ListSessions(
        self, request: spb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListSessionsReply:
        return spb.ListSessionsReply(session_ids=self._registry.ids())

    # ------------------------------------------------------------------ execution
    async def Execute(
        self, request: spb.SessionExecuteRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExecutionResult:
        return await self._registry.execute_result(
            request.session_id, request.code, request.inputs_json, list(request.output_names)
        )

    async def Cancel(self, request: spb.SessionRef, context: grpc.aio.ServicerContext) -> spb.Empty:
        self._registry.cancel(request.session_id)
        return spb.Empty()

    async def ConsoleOutput(self, request: spb.SessionRef, context: grpc.aio.ServicerContext) -> spb.ConsoleOutputReply:
        text, running = await self._registry.console_output(request.session_id)
        return spb.ConsoleOutputReply(console_output=text, running=running)

    async def History(self, request: spb.SessionRef, context: grpc.aio.ServicerContext) -> spb.HistoryReply:
        return spb.HistoryReply(code=self._registry.history(request.session_id))

    # ------------------------------------------------------------------ workspace objects
    async def ListObjects(self, request: spb.SessionRef, context: grpc.aio.ServicerContext) -> spb.NamesReply:
        return spb.NamesReply(names=await self._registry.list_objects(request.session_id))

    async def GetObject(self, request: spb.ItemRef, context: grpc.aio.ServicerContext) -> AsyncIterator[spb.Chunk]:
        try:
            blob = await self._registry.get_object(request.session_id, request.name)
        except AppError as exc:
            await _abort(context, exc)
            return
        view = memoryview(blob)
        for offset in range(0, len(blob), CHUNK):
            yield spb.Chunk(data=bytes(view[offset : offset + CHUNK]))

    async def PutObject(
        self, request_iterator: AsyncIterator[spb.UploadChunk], context: grpc.aio.ServicerContext
    ) -> spb.UploadReply:
        session_id, name, parts = "", "", bytearray()
        async for chunk in request_iterator:
            session_id, name = session_id or chunk.session_id, name or chunk.name
            parts += chunk.data
        try:
            await self._registry.put_object(session_id, name, bytes(parts))
        except AppError as exc:
            await _abort(context, exc)
        return spb.UploadReply(size=len(parts))

    async def DeleteObject(self, request: spb.ItemRef, context: grpc.aio.ServicerContext) -> spb.Empty:
        await self._registry.delete_object(request.session_id, request.name)
        return spb.Empty()

    # ------------------------------------------------------------------ files
    async def ListFiles(self, request: spb.SessionRef, context: grpc.aio.ServicerContext) -> spb.NamesReply:
        return spb.NamesReply(names=await asyncio.to_thread(self._registry.list_files, request.session_id))

    async def GetFile(self, request: spb.ItemRef, context: grpc.aio.ServicerContext) -> AsyncIterator[spb.Chunk]:
        try:
            path = self._registry.file_path(request.session_id, request.name, existing=True)
        except AppError as exc:
            await _abort(context, exc)
            return
        yielded = False
        async for chunk in _file_chunks(path):
            yielded = True
            yield chunk
        if not yielded:
            yield spb.Chunk()  # an empty file: one empty chunk tells the web node it exists

    async def PutFile(
        self, request_iterator: AsyncIterator[spb.UploadChunk], context: grpc.aio.ServicerContext
    ) -> spb.UploadReply:
        stream = aiter(request_iterator)
        try:
            first = await anext(stream)
            target = self._registry.file_path(first.session_id, check_file_name(first.name), existing=False)
            part = self._registry.upload_path(first.session_id)
        except StopAsyncIteration:
            await _abort(context, InvalidInput("empty upload"))
            raise
        except AppError as exc:
            await _abort(context, exc)
            raise

        async def rest() -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk.data

        size = await _receive_to(part, first.data, rest())
        await asyncio.to_thread(os.replace, part, target)
        await asyncio.to_thread(self._registry.hand_over, first.session_id, target)
        return spb.UploadReply(size=size)

    async def DeleteFile(self, request: spb.ItemRef, context: grpc.aio.ServicerContext) -> spb.Empty:
        path = self._registry.file_path(request.session_id, request.name, existing=True)
        await asyncio.to_thread(path.unlink)
        return spb.Empty()

    # ------------------------------------------------------------------ snapshots
    async def SaveSnapshot(
        self, request: spb.SaveSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[spb.Chunk]:
        try:
            path = await self._registry.save_snapshot(request.session_id, request.snapshot_id)
        except AppError as exc:
            await _abort(context, exc)
            return
        async for chunk in _file_chunks(path):
            yield chunk

    async def HasSnapshot(self, request: spb.SnapshotRef, context: grpc.aio.ServicerContext) -> spb.HasSnapshotReply:
        return spb.HasSnapshotReply(cached=self._registry.cache.path(request.snapshot_id) is not None)

    async def CacheSnapshot(
        self, request_iterator: AsyncIterator[spb.SnapshotChunk], context: grpc.aio.ServicerContext
    ) -> spb.UploadReply:
        stream = aiter(request_iterator)
        cache = self._registry.cache
        try:
            first = await anext(stream)
            part = cache.upload_path(first.snapshot_id)
        except StopAsyncIteration:
            await _abort(context, InvalidInput("empty snapshot upload"))
            raise
        except AppError as exc:
            await _abort(context, exc)
            raise

        async def rest() -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk.data

        size = await _receive_to(part, first.data, rest())
        with contextlib.suppress(FileNotFoundError):
            await cache.adopt(first.snapshot_id, part)
        return spb.UploadReply(size=size)

    async def LoadSnapshot(self, request: spb.LoadSnapshotRequest, context: grpc.aio.ServicerContext) -> spb.Empty:
        await self._registry.load_snapshot(request.session_id, request.snapshot_id)
        return spb.Empty()
