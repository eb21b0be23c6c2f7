"""Batch executions in the central store: one row per execution, one per record.

Whichever web node started an execution runs it and holds a lease on it (`lease_owner`,
`lease_until`), renewed while it runs. When a web node stops, its lease runs out and any
web node claims the execution and runs the records that have no result yet, so a restart
loses nothing. Every web node answers status queries from these rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from common.errors import NotFound
from webnode.store.db import Database, Row

PENDING, IN_PROGRESS, COMPLETE, FAILED = "Pending", "InProgress", "Complete", "Failed"
FINISHED = (COMPLETE, FAILED)


@dataclass(frozen=True)
class BatchExecution:
    id: str
    name: str
    version: str
    owner: str
    state: str
    total: int
    parallel_count: int
    created_at: float
    lease_owner: str


@dataclass(frozen=True)
class BatchItem:
    index: int
    inputs: str
    result: str | None  # the consume result (JSON text) once the record ran


_COLUMNS = "id, name, version, owner, state, total, parallel_count, created_at, lease_owner"


def _from_row(row: Row) -> BatchExecution:
    return BatchExecution(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        owner=row["owner"],
        state=row["state"],
        total=int(row["total"]),
        parallel_count=int(row["parallel_count"]),
        created_at=float(row["created_at"]),
        lease_owner=row["lease_owner"],
    )


class BatchStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, execution: BatchExecution, records: list[str], lease_until: float) -> None:
        async with self._db.transaction() as tx:
            for index, inputs in enumerate(records):
                await tx.execute(
                    "INSERT INTO batch_items (execution_id, idx, inputs, done) VALUES ($1, $2, $3, 0)",
                    execution.id,
                    index,
                    inputs,
                )
            await tx.execute(
                f"INSERT INTO batch_executions ({_COLUMNS}, lease_until) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                execution.id,
                execution.name,
                execution.version,
                execution.owner,
                execution.state,
                execution.total,
                execution.parallel_count,
                execution.created_at,
                execution.lease_owner,
                lease_until,
            )

    async def get(self, execution_id: str, name: str, version: str) -> BatchExecution:
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM batch_executions WHERE id=$1 AND name=$2 AND version=$3",
            execution_id,
            name,
            version,
        )
        if row is None:
            raise NotFound(f"batch execution '{execution_id}' of web service '{name}' version '{version}' not found")
        return _from_row(row)

    async def find(self, execution_id: str) -> BatchExecution | None:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM batch_executions WHERE id=$1", execution_id)
        return _from_row(row) if row is not None else None

    async def of_service(self, name: str, version: str, owner: str | None) -> list[BatchExecution]:
        if owner is None:
            rows = await self._db.fetch(
                f"SELECT {_COLUMNS} FROM batch_executions WHERE name=$1 AND version=$2 ORDER BY created_at",
                name,
                version,
            )
        else:
            rows = await self._db.fetch(
                f"SELECT {_COLUMNS} FROM batch_executions WHERE name=$1 AND version=$2 AND owner=$3 "
                "ORDER BY created_at",
                name,
                version,
                owner,
            )
        return [_from_row(r) for r in rows]

    async def items(self, execution_id: str, *, pending_only: bool = False) -> list[BatchItem]:
        sql = "SELECT idx, inputs, result FROM batch_items WHERE execution_id=$1"
        if pending_only:
            sql += " AND done=0"
        rows = await self._db.fetch(sql + " ORDER BY idx", execution_id)
        return [BatchItem(int(r["idx"]), r["inputs"], r["result"]) for r in rows]

    async def item(self, execution_id: str, index: int) -> BatchItem:
        row = await self._db.fetchrow(
            "SELECT idx, inputs, result FROM batch_items WHERE execution_id=$1 AND idx=$2", execution_id, index
        )
        if row is None:
            raise NotFound(f"batch execution '{execution_id}' has no record {index}")
        return BatchItem(int(row["idx"]), row["inputs"], row["result"])

    async def completed(self, execution_id: str) -> int:
        row = await self._db.fetchrow(
            "SELECT COUNT(*) AS n FROM batch_items WHERE execution_id=$1 AND done=1", execution_id
        )
        return int(row["n"]) if row else 0

    async def set_result(self, execution_id: str, index: int, result: str) -> None:
        """Store one record's result; the last one also marks the execution Complete, in the same transaction."""
        async with self._db.transaction() as tx:
            if tx.dialect == "postgres":
                # Serialize the records of one execution: two last records finishing together must not
                # each miss the other's result (SQLite transactions are serialized already).
                await tx.execute("SELECT id FROM batch_executions WHERE id=$1 FOR UPDATE", execution_id)
            await tx.execute(
                "UPDATE batch_items SET done=1, result=$3 WHERE execution_id=$1 AND idx=$2", execution_id, index, result
            )
            await BatchStore(tx).finish_if_done(execution_id)

    async def finish_if_done(self, execution_id: str) -> None:
        """Mark the execution Complete when every record has a result."""
        await self._db.execute(
            "UPDATE batch_executions SET state=$2, finished_at=$3 WHERE id=$1 AND state IN ($4, $5) AND NOT EXISTS "
            "(SELECT 1 FROM batch_items WHERE execution_id=$1 AND done=0)",
            execution_id,
            COMPLETE,
            time.time(),
            PENDING,
            IN_PROGRESS,
        )

    async def set_state(self, execution_id: str, state: str) -> None:
        finished = time.time() if state in FINISHED else None
        await self._db.execute(
            "UPDATE batch_executions SET state=$2, finished_at=$3 WHERE id=$1", execution_id, state, finished
        )

    async def renew(self, node: str, execution_ids: list[str], lease_until: float) -> None:
        for execution_id in execution_ids:
            await self._db.execute(
                "UPDATE batch_executions SET lease_until=$3 WHERE id=$1 AND lease_owner=$2",
                execution_id,
                node,
                lease_until,
            )

    async def claim_orphans(self, node: str, now: float, lease_until: float) -> list[BatchExecution]:
        """Take over unfinished executions whose runner's lease ran out; returns those this node won."""
        rows = await self._db.fetch(
            "SELECT id FROM batch_executions WHERE state IN ($1, $2) AND lease_until < $3",
            PENDING,
            IN_PROGRESS,
            now,
        )
        won = []
        for row in rows:
            await self._db.execute(
                "UPDATE batch_executions SET lease_owner=$2, lease_until=$3 WHERE id=$1 AND lease_until < $4",
                row["id"],
                node,
                lease_until,
                now,
            )
            execution = await self.find(row["id"])
            if execution is not None and execution.lease_owner == node:
                won.append(execution)
        return won

    async def delete(self, execution_id: str) -> None:
        await self._db.execute("DELETE FROM batch_executions WHERE id=$1", execution_id)
        await self._db.execute("DELETE FROM batch_items WHERE execution_id=$1", execution_id)

    async def delete_service(self, name: str, version: str) -> list[str]:
        """Delete every execution of a service version (when the service is deleted); returns their ids."""
        rows = await self._db.fetch("SELECT id FROM batch_executions WHERE name=$1 AND version=$2", name, version)
        for row in rows:
            await self.delete(row["id"])
        return [r["id"] for r in rows]
