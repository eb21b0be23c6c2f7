"""Snapshot zips moving between the central store and compute nodes, ~1 MiB chunk at a time.

A compute node keeps the zips it made or received in a cache by snapshot id (content never
changes for an id). `cache_snapshot` makes sure one node holds a snapshot: it asks first
(HasSnapshot) and streams the zip from the store only when the node lacks it. Sessions
loading a snapshot and services carrying one (their own copy) both go through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from common.pb import sessions_pb2 as spb
from common.pb import sessions_pb2_grpc as spb_grpc
from webnode.store.snapshots import SnapshotStore

_AHEAD = 4  # chunks read ahead while the previous ones are written (bounded: ~4 MiB per transfer)
HAS_DEADLINE = 30.0


async def read_ahead(source: AsyncIterator[bytes], depth: int = _AHEAD) -> AsyncIterator[bytes]:
    """Iterate `source` in a task of its own, up to `depth` chunks ahead of the consumer.

    Reading (from a compute node or the store) then overlaps writing (to the store, a compute
    node or the client) instead of alternating with it.
    """
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(depth)

    async def fill() -> None:
        try:
            async for data in source:
                await queue.put(data)
            await queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)

    task = asyncio.get_running_loop().create_task(fill())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cache_snapshot(
    stub: spb_grpc.SessionsStub, snapshots: SnapshotStore, snapshot_id: str, timeout: float
) -> bool:
    """Make sure the node behind `stub` has snapshot `snapshot_id` cached; True if it had to be sent.

    Raises grpc.RpcError for the caller to translate, NotFound if the store lacks the snapshot.
    """
    cached = await stub.HasSnapshot(spb.SnapshotRef(snapshot_id=snapshot_id), timeout=HAS_DEADLINE)
    if cached.cached:
        return False
    record = await snapshots.get(snapshot_id)

    async def messages() -> AsyncIterator[spb.SnapshotChunk]:
        yield spb.SnapshotChunk(snapshot_id=record.id)
        async for data in read_ahead(snapshots.chunks(record)):
            yield spb.SnapshotChunk(data=data)

    await stub.CacheSnapshot(messages(), timeout=timeout)
    return True
