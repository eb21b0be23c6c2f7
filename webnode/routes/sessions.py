"""Remote sessions: /sessions, execute, console-output, history, cancel, files, workspace, snapshot.

Every handler finds the caller's session record (another user's session is 404, never
403), then makes one call to the compute node that holds it (webnode/compute/sessions.py).
Large bodies stream through in ~1 MiB chunks; nothing is held whole on the web node.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator

import orjson
from aiohttp import BodyPartReader, web

from common.errors import InvalidInput, PayloadTooLarge
from common.pb import compute_pb2 as pb
from common.pb import sessions_pb2 as spb
from common.pb import sessions_pb2_grpc as spb_grpc
from webnode.auth.roles import Action, require
from webnode.compute.sessions import SessionGateway
from webnode.keys import cluster_key, coordinator_key, db_key, principal, settings_key
from webnode.routes.snapshots import load_into, save_from
from webnode.schemas import CreateSessionRequest, CreateSnapshotRequest, ExecuteRequest, read_model
from webnode.store.sessions import SessionRecord, SessionStore
from webnode.store.snapshots import SnapshotStore

routes = web.RouteTableDef()
gateway_key = web.AppKey("session_gateway", SessionGateway)
CHUNK = 1 << 20
_BODY_LIMIT = 64 * 1024 * 1024


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the session gateway (needs the store, coordination and cluster contexts first)."""
    settings = app[settings_key]
    gateway = SessionGateway(
        SessionStore(app[db_key]),
        SnapshotStore(app[db_key]),
        app[cluster_key],
        app[coordinator_key],
        idle_timeout=settings.session_idle_timeout,
        sweep_interval=settings.session_sweep_interval,
        call_timeout=settings.compute_timeout,
    )
    await gateway.start()
    app[gateway_key] = gateway
    yield
    await gateway.close()


# ---------------------------------------------------------------------- helpers
def check_item_name(name: str, what: str) -> str:
    """A plain name: no separators (also percent-encoded), no NUL, not '.' or '..'."""
    decoded = urllib.parse.unquote(name)
    for candidate in (name, decoded):
        if (
            not candidate
            or candidate in (".", "..")
            or "/" in candidate
            or "\\" in candidate
            or "\x00" in candidate
            or len(candidate.encode()) > 255
        ):
            raise InvalidInput(f"{name!r} is not a valid {what}: a plain name is expected", field=what)
    return name


async def _session(request: web.Request) -> tuple[SessionGateway, SessionRecord]:
    require(principal(request), Action.SESSIONS)
    gateway = request.app[gateway_key]
    record = await gateway.find(request.match_info["id"], principal(request).username)
    return gateway, record


def _ref(record: SessionRecord) -> spb.SessionRef:
    return spb.SessionRef(session_id=record.id)


async def _stream_out(
    request: web.Request, first: bytes, rest: AsyncIterator[bytes], filename: str
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(filename)}",
        }
    )
    await response.prepare(request)
    await response.write(first)
    async for data in rest:
        await response.write(data)
    await response.write_eof()
    return response


_DRAIN_LIMIT = 16 * 1024 * 1024


async def _too_large(request: web.Request, limit: int) -> PayloadTooLarge:
    """413; the rest of a moderately sized body is read first so the client sees the answer."""
    drained = 0
    while drained < _DRAIN_LIMIT and (data := await request.content.read(CHUNK)):
        drained += len(data)
    return PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes")


async def _check_length(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise await _too_large(request, limit)


# ---------------------------------------------------------------------- lifecycle
@routes.post("/sessions")
async def create_session(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, Action.SESSIONS)
    raw = await request.read() if request.can_read_body else b""
    body = (
        CreateSessionRequest()
        if not raw.strip()
        else await read_model(request, CreateSessionRequest, limit=_BODY_LIMIT)
    )
    runtime = body.runtimeType or "R"
    snapshots = SnapshotStore(request.app[db_key])
    snapshot = None
    if body.snapshotId:
        snapshot = await snapshots.get(body.snapshotId, who.username)
        if snapshot.runtime != runtime:
            raise InvalidInput(
                f"snapshot '{snapshot.id}' is a {snapshot.runtime} snapshot; it cannot start a session of runtime "
                f"{runtime}",
                field="snapshotId",
            )
    gateway = request.app[gateway_key]
    record = await gateway.create(who.username, body.name or "", runtime)
    if snapshot is not None:
        try:
            await load_into(gateway, snapshots, record, snapshot)
        except BaseException:
            await _close(gateway, record, force=True)
            raise
    return web.json_response({"sessionId": record.id}, status=201)


@routes.get("/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, Action.SESSIONS)
    records = await request.app[gateway_key].store.list(who.username)
    return web.json_response(
        [{"id": r.id, "name": r.name, "owner": r.owner, "runtimeType": r.runtime} for r in records]
    )


async def _close(gateway: SessionGateway, record: SessionRecord, *, force: bool) -> None:
    """Close on the node; a session that is already gone counts as closed."""
    from common.errors import Gone

    try:
        await gateway.call(
            record, lambda s: s.CloseSession(spb.CloseSessionRequest(session_id=record.id, force=force), timeout=30)
        )
    except Gone:
        return
    await gateway.forget(record)


@routes.delete("/sessions/{id}")
async def close_session(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    await _close(gateway, record, force=False)
    return web.json_response(f"session {record.id} closed")


@routes.delete("/sessions/{id}/force")
async def force_close_session(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    await _close(gateway, record, force=True)
    return web.json_response(f"session {record.id} killed")


# ---------------------------------------------------------------------- execution
@routes.post("/sessions/{id}/execute")
async def execute(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    body = await read_model(request, ExecuteRequest, limit=request.app[settings_key].max_body_size)
    inputs = [item.model_dump() for item in body.inputParameters or []]
    call = pb.SessionExecute(
        session_id=record.id,
        code=body.code,
        inputs_json=orjson.dumps(inputs),
        output_names=body.outputParameters or [],
    )
    result = await gateway.execute(record, call)
    return web.Response(
        body=orjson.dumps(
            {
                "success": result.success,
                "errorMessage": result.error_message,
                "outputParameters": orjson.Fragment(result.outputs_json or b"[]"),
                "consoleOutput": result.console_output,
                "changedFiles": list(result.changed_files),
            }
        ),
        content_type="application/json",
    )


@routes.post("/sessions/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    await gateway.call(record, lambda s: s.Cancel(_ref(record), timeout=30))
    return web.json_response(f"session {record.id} cancelled")


@routes.get("/sessions/{id}/console-output")
async def console_output(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    reply = await gateway.call(record, lambda s: s.ConsoleOutput(_ref(record), timeout=30))
    return web.json_response({"consoleOutput": reply.console_output})


@routes.get("/sessions/{id}/history")
async def history(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    reply = await gateway.call(record, lambda s: s.History(_ref(record), timeout=30))
    return web.json_response(list(reply.code))


# ---------------------------------------------------------------------- files
@routes.get("/sessions/{id}/files")
async def list_files(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    reply = await gateway.call(record, lambda s: s.ListFiles(_ref(record), timeout=30))
    return web.json_response(list(reply.names))


async def _upload(
    request: web.Request,
    gateway: SessionGateway,
    record: SessionRecord,
    method: str,
    name: str,
    chunks: AsyncIterator[bytes],
) -> None:
    """Stream `chunks` to the node; past the upload limit the call is cancelled (the node drops
    the partial upload) and the answer is 413."""
    limit = request.app[settings_key].session_upload_limit

    async def send(stub: spb_grpc.SessionsStub) -> None:
        call = getattr(stub, method)(timeout=gateway.call_timeout)
        await call.write(spb.UploadChunk(session_id=record.id, name=name))
        size = 0
        async for data in chunks:
            size += len(data)
            if size > limit:
                call.cancel()
                raise await _too_large(request, limit)
            await call.write(spb.UploadChunk(data=data))
        await call.done_writing()
        await call

    await gateway.call(record, send)


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while data := await part.read_chunk(CHUNK):
        yield data


@routes.post("/sessions/{id}/files")
async def upload_file(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    await _check_length(request, request.app[settings_key].session_upload_limit)
    if not request.content_type.startswith("multipart/"):
        raise InvalidInput("upload the file as multipart/form-data in a field named 'file'", field="file")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "file":
            if not part.filename:
                raise InvalidInput("the 'file' field has no file name", field="file")
            # Some clients (aiohttp) percent-encode the file name; decode once, then check.
            name = check_item_name(urllib.parse.unquote(part.filename), "fileName")
            await _upload(request, gateway, record, "PutFile", name, _part_chunks(part))
            return web.Response(status=201, text=f"{name} uploaded", content_type="text/plain")
        if isinstance(part, BodyPartReader):
            await part.release()
    raise InvalidInput("the multipart body has no 'file' field", field="file")


@routes.get("/sessions/{id}/files/{fileName}")
async def download_file(request: web.Request) -> web.StreamResponse:
    gateway, record = await _session(request)
    name = check_item_name(request.match_info["fileName"], "fileName")
    first, rest = await gateway.download(record, lambda s: s.GetFile(spb.ItemRef(session_id=record.id, name=name)))
    return await _stream_out(request, first, rest, name)


@routes.delete("/sessions/{id}/files/{fileName}")
async def delete_file(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    name = check_item_name(request.match_info["fileName"], "fileName")
    await gateway.call(record, lambda s: s.DeleteFile(spb.ItemRef(session_id=record.id, name=name), timeout=30))
    return web.json_response(f"{name} deleted")


# ---------------------------------------------------------------------- workspace objects
@routes.get("/sessions/{id}/workspace")
async def list_objects(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    reply = await gateway.call(record, lambda s: s.ListObjects(_ref(record), timeout=gateway.call_timeout))
    return web.json_response(list(reply.names))


@routes.get("/sessions/{id}/workspace/{objectName}")
async def get_object(request: web.Request) -> web.StreamResponse:
    gateway, record = await _session(request)
    name = check_item_name(request.match_info["objectName"], "objectName")
    first, rest = await gateway.download(record, lambda s: s.GetObject(spb.ItemRef(session_id=record.id, name=name)))
    suffix = ".dill" if record.runtime == "Python" else ".RData"
    return await _stream_out(request, first, rest, name + suffix)


async def _content_chunks(request: web.Request) -> AsyncIterator[bytes]:
    while data := await request.content.read(CHUNK):
        yield data


@routes.post("/sessions/{id}/workspace/{objectName}")
async def put_object(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    name = check_item_name(request.match_info["objectName"], "objectName")
    await _check_length(request, request.app[settings_key].session_upload_limit)
    await _upload(request, gateway, record, "PutObject", name, _content_chunks(request))
    return web.json_response(f"{name} uploaded")


@routes.delete("/sessions/{id}/workspace/{objectName}")
async def delete_object(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    name = check_item_name(request.match_info["objectName"], "objectName")
    await gateway.call(
        record, lambda s: s.DeleteObject(spb.ItemRef(session_id=record.id, name=name), timeout=gateway.call_timeout)
    )
    return web.json_response(f"{name} deleted")


# ---------------------------------------------------------------------- snapshots of a session
@routes.post("/sessions/{id}/snapshot")
async def create_snapshot(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    raw = await request.read() if request.can_read_body else b""
    body = (
        CreateSnapshotRequest()
        if not raw.strip()
        else await read_model(request, CreateSnapshotRequest, limit=_BODY_LIMIT)
    )
    started = time.monotonic()
    snapshot = await save_from(gateway, SnapshotStore(request.app[db_key]), record, body.name or "")
    request.app.logger.info(
        "snapshot %s of session %s: %d bytes in %.2f s",
        snapshot.id,
        record.id,
        snapshot.content_size,
        time.monotonic() - started,
    )
    return web.json_response({"snapshotId": snapshot.id}, status=201)


@routes.post("/sessions/{id}/loadsnapshot/{snapshotId}")
async def load_snapshot(request: web.Request) -> web.Response:
    gateway, record = await _session(request)
    snapshots = SnapshotStore(request.app[db_key])
    snapshot = await snapshots.get(request.match_info["snapshotId"], principal(request).username)
    if snapshot.runtime != record.runtime:
        raise InvalidInput(
            f"snapshot '{snapshot.id}' is a {snapshot.runtime} snapshot; it cannot be loaded into a "
            f"{record.runtime} session",
            field="snapshotId",
        )
    await load_into(gateway, snapshots, record, snapshot)
    return web.json_response(f"snapshot {snapshot.id} loaded into session {record.id}")
