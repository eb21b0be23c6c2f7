"""Session placement in the central store: which compute node holds each session, and for whom."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from common.errors import NotFound
from webnode.store.db import Database, Row


@dataclass(frozen=True)
class SessionRecord:
    id: str
    owner: str
    name: str
    runtime: str  # "R" | "Python"
    node_uri: str
    created_at: float = field(default_factory=time.time)


_COLUMNS = "id, owner, name, runtime, node_uri, created_at"


def _from_row(row: Row) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        runtime=row["runtime"],
        node_uri=row["node_uri"],
        created_at=float(row["created_at"]),
    )


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: SessionRecord) -> None:
        await self._db.execute(
            f"INSERT INTO sessions ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            record.id,
            record.owner,
            record.name,
            record.runtime,
            record.node_uri,
            record.created_at,
        )

    async def get(self, session_id: str, owner: str) -> SessionRecord:
        """The caller's session; another user's session is NotFound too (its existence is not revealed)."""
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM sessions WHERE id = $1", session_id)
        if row is None or row["owner"] != owner:
            raise NotFound(f"session '{session_id}' not found")
        return _from_row(row)

    async def list(self, owner: str | None = None) -> list[SessionRecord]:
        if owner is None:
            rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM sessions ORDER BY created_at")
        else:
            rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM sessions WHERE owner = $1 ORDER BY created_at", owner)
        return [_from_row(r) for r in rows]

    async def delete(self, session_id: str) -> None:
        await self._db.execute("DELETE FROM sessions WHERE id = $1", session_id)
