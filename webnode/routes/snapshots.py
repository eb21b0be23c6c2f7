"""Snapshots: GET /snapshots, GET/DELETE /snapshots/{id}; saving and loading them for sessions.

A snapshot's zip moves between a compute node and the central store in ~1 MiB chunks,
one at a time, so a web node never holds a whole snapshot in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import urllib.parse
import uuid

from aiohttp import web

from common.pb import sessions_pb2 as spb
from webnode.auth.roles import Action, require
from webnode.compute.sessions import SessionGateway
from webnode.compute.snapshots import cache_snapshot, read_ahead
from webnode.keys import db_key, principal
from webnode.schemas import creation_time
from webnode.store.sessions import SessionRecord
from webnode.store.snapshots import SnapshotRecord, SnapshotStore

routes = web.RouteTableDef()


async def save_from(
    gateway: SessionGateway, snapshots: SnapshotStore, session: SessionRecord, name: str
) -> SnapshotRecord:
    """Snapshot a session: stream the zip its node builds into the store, chunk by chunk."""
    snapshot_id = str(uuid.uuid4())
    record = SnapshotRecord(
        id=snapshot_id, owner=session.owner, name=name, runtime=session.runtime, content_size=0, chunk_count=0
    )
    await snapshots.begin(record)
    size, seq = 0, 0
    try:
        first, rest = await gateway.download(
            session,
            lambda s: s.SaveSnapshot(spb.SaveSnapshotRequest(session_id=session.id, snapshot_id=snapshot_id)),
        )
        await snapshots.put_chunk(snapshot_id, seq, first)
        size, seq = len(first), 1
        async for data in read_ahead(rest):
            await snapshots.put_chunk(snapshot_id, seq, data)
            size, seq = size + len(data), seq + 1
        await snapshots.complete(snapshot_id, size, seq)
    except BaseException:
        with contextlib.suppress(Exception):
            await snapshots.delete(snapshot_id)
        raise
    record = dataclasses.replace(record, content_size=size, chunk_count=seq)
    return record


async def load_into(
    gateway: SessionGateway, snapshots: SnapshotStore, session: SessionRecord, snapshot: SnapshotRecord
) -> None:
    """Load a snapshot into a session; its node fetches the content only if not cached already."""
    await gateway.call(session, lambda s: cache_snapshot(s, snapshots, snapshot.id, gateway.call_timeout))
    request = spb.LoadSnapshotRequest(session_id=session.id, snapshot_id=snapshot.id)
    await gateway.call(session, lambda s: s.LoadSnapshot(request, timeout=gateway.call_timeout))


def snapshot_json(record: SnapshotRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "owner": record.owner,
        "runtimeType": record.runtime,
        "creationTime": creation_time(record.created_at),
        "contentSize": record.content_size,
    }


@routes.get("/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, Action.SESSIONS)
    records = await SnapshotStore(request.app[db_key]).list(who.username)
    return web.json_response([snapshot_json(r) for r in records])


@routes.get("/snapshots/{id}")
async def download_snapshot(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    require(who, Action.SESSIONS)
    snapshots = SnapshotStore(request.app[db_key])
    record = await snapshots.get(request.match_info["id"], who.username)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(record.id)}.zip",
        }
    )
    response.content_length = record.content_size
    await response.prepare(request)
    async for data in read_ahead(snapshots.chunks(record)):
        await response.write(data)
    await response.write_eof()
    return response


@routes.delete("/snapshots/{id}")
async def delete_snapshot(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, Action.SESSIONS)
    snapshots = SnapshotStore(request.app[db_key])
    record = await snapshots.get(request.match_info["id"], who.username)
    await snapshots.delete(record.id)
    return web.json_response(f"snapshot {record.id} deleted")
