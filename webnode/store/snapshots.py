"""Snapshots in the central store: metadata rows plus the zip content as ordered ~1 MiB chunks.

A snapshot being written has a metadata row with `content_size = -1` (PENDING): it is not
listed or served until `complete` records its size. Content is written and read back chunk
by chunk, so no node holds a whole zip in memory. `delete_stale` removes what a web node that
died mid-write left behind.

For publishing services: `copy_snapshot(snapshot_id, new_id, owner=...)` copies a
snapshot's metadata and content inside the database under a new id that the service owns,
so the service keeps working after Microsoft's client deletes the original snapshot.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from common.errors import NotFound
from webnode.store.db import Database, Row


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    owner: str
    name: str
    runtime: str  # "R" | "Python"
    content_size: int
    chunk_count: int
    created_at: float = field(default_factory=time.time)


_COLUMNS = "id, owner, name, runtime, content_size, chunk_count, created_at"
PENDING = -1


def _from_row(row: Row) -> SnapshotRecord:
    return SnapshotRecord(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        runtime=row["runtime"],
        content_size=int(row["content_size"]),
        chunk_count=int(row["chunk_count"]),
        created_at=float(row["created_at"]),
    )


class SnapshotStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put_chunk(self, snapshot_id: str, seq: int, data: bytes) -> None:
        await self._db.execute(
            "INSERT INTO snapshot_chunks (snapshot_id, seq, data) VALUES ($1, $2, $3)", snapshot_id, seq, data
        )

    async def begin(self, record: SnapshotRecord) -> None:
        """Record a snapshot whose chunks are about to be written (not listed until `complete`)."""
        await self.finish(dataclasses.replace(record, content_size=PENDING, chunk_count=0))

    async def complete(self, snapshot_id: str, content_size: int, chunk_count: int) -> None:
        await self._db.execute(
            "UPDATE snapshots SET content_size = $2, chunk_count = $3 WHERE id = $1",
            snapshot_id,
            content_size,
            chunk_count,
        )

    async def delete_stale(self, older_than: float) -> int:
        """Remove snapshots still pending since before `older_than` (epoch seconds); returns how many."""
        rows = await self._db.fetch(
            "SELECT id FROM snapshots WHERE content_size = $1 AND created_at < $2", PENDING, older_than
        )
        for row in rows:
            await self.delete(row["id"])
        return len(rows)

    async def finish(self, record: SnapshotRecord) -> None:
        """Record a snapshot whose chunks are all stored."""
        await self._db.execute(
            f"INSERT INTO snapshots ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            record.id,
            record.owner,
            record.name,
            record.runtime,
            record.content_size,
            record.chunk_count,
            record.created_at,
        )

    async def get(self, snapshot_id: str, owner: str | None = None) -> SnapshotRecord:
        """The snapshot (the caller's, when `owner` is given; others' are NotFound too)."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM snapshots WHERE id = $1 AND content_size >= 0", snapshot_id
        )
        if row is None or (owner is not None and row["owner"] != owner):
            raise NotFound(f"snapshot '{snapshot_id}' not found")
        return _from_row(row)

    async def list(self, owner: str) -> list[SnapshotRecord]:
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM snapshots WHERE owner = $1 AND content_size >= 0 ORDER BY created_at", owner
        )
        return [_from_row(r) for r in rows]

    async def chunks(self, record: SnapshotRecord) -> AsyncIterator[bytes]:
        """The zip content, one stored chunk at a time."""
        for seq in range(record.chunk_count):
            row = await self._db.fetchrow(
                "SELECT data FROM snapshot_chunks WHERE snapshot_id = $1 AND seq = $2", record.id, seq
            )
            if row is None:
                raise NotFound(f"snapshot '{record.id}' content is incomplete (chunk {seq} missing)")
            yield bytes(row["data"])

    async def read_content(self, snapshot_id: str) -> bytes:
        """The whole zip in memory (small snapshots only; prefer `chunks`)."""
        record = await self.get(snapshot_id)
        return b"".join([chunk async for chunk in self.chunks(record)])

    async def copy_snapshot(
        self, snapshot_id: str, new_id: str, *, owner: str, name: str | None = None
    ) -> SnapshotRecord:
        """Copy a snapshot's content and metadata under `new_id` (for a published service to own)."""
        source = await self.get(snapshot_id)
        copy = SnapshotRecord(
            id=new_id,
            owner=owner,
            name=source.name if name is None else name,
            runtime=source.runtime,
            content_size=source.content_size,
            chunk_count=source.chunk_count,
        )
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO snapshot_chunks (snapshot_id, seq, data) "
                "SELECT $1, seq, data FROM snapshot_chunks WHERE snapshot_id = $2",
                new_id,
                snapshot_id,
            )
            await SnapshotStore(tx).finish(copy)
        return copy

    async def delete(self, snapshot_id: str) -> None:
        await self._db.execute("DELETE FROM snapshots WHERE id = $1", snapshot_id)
        await self._db.execute("DELETE FROM snapshot_chunks WHERE snapshot_id = $1", snapshot_id)
