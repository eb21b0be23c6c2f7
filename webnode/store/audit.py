"""The audit log: who did what, when, from where, with what outcome (never a secret)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from webnode.store.db import Database


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    target: str
    outcome: str
    address: str
    request_id: str
    detail: str


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: AuditEntry) -> None:
        await self._db.execute(
            "INSERT INTO audit_log (id, at, actor, action, target, outcome, address, request_id, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            uuid.uuid4().hex,
            entry.at or time.time(),
            entry.actor,
            entry.action,
            entry.target,
            entry.outcome,
            entry.address,
            entry.request_id,
            entry.detail,
        )

    async def recent(self, limit: int = 100, action: str = "") -> list[AuditEntry]:
        """The newest entries first, optionally of one action."""
        columns = "at, actor, action, target, outcome, address, request_id, detail"
        if action:
            rows = await self._db.fetch(
                f"SELECT {columns} FROM audit_log WHERE action=$1 ORDER BY at DESC LIMIT $2", action, limit
            )
        else:
            rows = await self._db.fetch(f"SELECT {columns} FROM audit_log ORDER BY at DESC LIMIT $1", limit)
        return [
            AuditEntry(
                float(r["at"]),
                r["actor"],
                r["action"],
                r["target"],
                r["outcome"],
                r["address"],
                r["request_id"],
                r["detail"],
            )
            for r in rows
        ]
