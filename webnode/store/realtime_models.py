"""Realtime model bytes in the central store, keyed by their SHA-256 (one row per distinct model)."""

from __future__ import annotations

import time

from common.errors import NotFound
from webnode.store.db import Database, DuplicateKey


class ModelStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, model_hash: str, model_format: str, content: bytes) -> None:
        """Store the bytes unless a model with that hash is already stored."""
        if await self._db.fetchrow("SELECT 1 AS one FROM realtime_models WHERE model_hash=$1", model_hash):
            return
        try:
            await self._db.execute(
                "INSERT INTO realtime_models (model_hash, format, size, content, created_at) VALUES ($1,$2,$3,$4,$5)",
                model_hash,
                model_format,
                len(content),
                content,
                time.time(),
            )
        except DuplicateKey:
            pass  # stored meanwhile by another publish of the same bytes

    async def get(self, model_hash: str) -> bytes:
        row = await self._db.fetchrow("SELECT content FROM realtime_models WHERE model_hash=$1", model_hash)
        if row is None:
            raise NotFound(f"model {model_hash} is not in the store")
        return bytes(row["content"])

    async def delete_unused(self, model_hash: str) -> bool:
        """Drop the bytes when no service version refers to them any more; True when dropped."""
        rows = await self._db.fetch(
            "SELECT name FROM services WHERE runtime='Realtime' AND code LIKE $1", f"%sha256:{model_hash}%"
        )
        if rows:
            return False
        await self._db.execute("DELETE FROM realtime_models WHERE model_hash=$1", model_hash)
        return True
