"""The dedicated pools wanted per service version: the central truth every web node reconciles to."""

from __future__ import annotations

import time
from dataclasses import dataclass

from webnode.store.db import Database, Row


@dataclass(frozen=True)
class ServicePool:
    name: str
    version: str
    service_created_at: float  # tells a pool apart from one of a deleted and republished version
    initial_size: int
    max_size: int

    @property
    def service_id(self) -> str:
        return f"{self.name}/{self.version}"


class ServicePoolStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, pool: ServicePool) -> None:
        await self._db.execute(
            "INSERT INTO service_pools (name, version, service_created_at, initial_size, max_size, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version) DO UPDATE SET "
            "service_created_at = excluded.service_created_at, initial_size = excluded.initial_size, "
            "max_size = excluded.max_size, updated_at = excluded.updated_at",
            pool.name,
            pool.version,
            pool.service_created_at,
            pool.initial_size,
            pool.max_size,
            time.time(),
        )

    async def get(self, name: str, version: str) -> ServicePool | None:
        row = await self._db.fetchrow(
            "SELECT name, version, service_created_at, initial_size, max_size FROM service_pools "
            "WHERE name=$1 AND version=$2",
            name,
            version,
        )
        return _pool(row) if row else None

    async def list(self) -> list[ServicePool]:
        rows = await self._db.fetch(
            "SELECT name, version, service_created_at, initial_size, max_size FROM service_pools ORDER BY name, version"
        )
        return [_pool(r) for r in rows]

    async def delete(self, name: str, version: str) -> bool:
        existed = await self.get(name, version) is not None
        await self._db.execute("DELETE FROM service_pools WHERE name=$1 AND version=$2", name, version)
        return existed


def _pool(r: Row) -> ServicePool:
    return ServicePool(
        name=str(r["name"]),
        version=str(r["version"]),
        service_created_at=float(r["service_created_at"]),
        initial_size=int(r["initial_size"]),
        max_size=int(r["max_size"]),
    )
