"""Central key/value configuration shared by every web node (signing keys, compute node list)."""

from __future__ import annotations

from typing import Any

import orjson

from webnode.store.db import Database, DuplicateKey


class ConfigStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> Any | None:
        row = await self._db.fetchrow("SELECT value FROM config WHERE key=$1", key)
        return orjson.loads(row["value"]) if row else None

    async def set(self, key: str, value: Any) -> None:
        raw = orjson.dumps(value).decode()
        await self._db.execute(
            "INSERT INTO config (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            raw,
        )

    async def set_if_absent(self, key: str, value: Any) -> Any:
        """Store `value` unless the key exists; return what is stored (first writer wins)."""
        try:
            await self._db.execute("INSERT INTO config (key, value) VALUES ($1, $2)", key, orjson.dumps(value).decode())
        except DuplicateKey:
            pass
        return await self.get(key)
