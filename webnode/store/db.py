"""One SQL interface over two backends: SQLite (one-box, embedded) and Postgres (cluster, asyncpg).

SQL is written once with Postgres's `$1` placeholders; the SQLite backend rewrites them to
its numbered `?1` form. Backend failures become `DuplicateKey` (a unique constraint) or
`Unavailable` (the database cannot be reached), so no driver exception leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg

from common.errors import Unavailable

logger = logging.getLogger(__name__)
Row = Mapping[str, Any]


class DuplicateKey(Exception):
    """A row with the same key exists."""


class Database(Protocol):
    dialect: str

    async def execute(self, sql: str, *args: Any) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Database]: ...
    async def details(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


_PLACEHOLDER = re.compile(r"\$(\d+)")


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        self._lock = asyncio.Lock()
        self._in_tx = False

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        return cls(conn, path)

    @staticmethod
    def _sql(sql: str) -> str:
        return _PLACEHOLDER.sub(r"?\1", sql)

    async def _run(self, sql: str, args: Sequence[Any]) -> list[Row]:
        try:
            async with self._conn.execute(self._sql(sql), tuple(args)) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from None
        except sqlite3.OperationalError as exc:
            logger.error("sqlite error: %s", exc)
            raise Unavailable("the embedded store failed: " + str(exc)) from None
        return [dict(r) for r in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        if self._in_tx:
            await self._run(sql, args)
            return
        async with self._lock:
            await self._run(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        if self._in_tx:
            return await self._run(sql, args)
        async with self._lock:
            return await self._run(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        async with self._lock:
            self._in_tx = True
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")
            finally:
                self._in_tx = False

    async def details(self) -> dict[str, Any]:
        await self.fetch("SELECT 1")
        return {"type": "sqlite", "name": str(self._path), "state": "Open"}

    async def close(self) -> None:
        await self._conn.close()


_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


class PostgresDatabase:
    dialect = "postgres"

    def __init__(self, pool: asyncpg.Pool | None, conn: asyncpg.Connection | None, dsn: str) -> None:
        self._pool = pool
        self._conn = conn
        self._dsn = dsn

    @classmethod
    async def open(cls, dsn: str) -> PostgresDatabase:
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, command_timeout=60)
        except _PG_DOWN as exc:
            raise Unavailable(f"cannot reach Postgres: {exc}") from None
        return cls(pool, None, dsn)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._conn is not None:
            yield self._conn
            return
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateKey(str(exc)) from None
        except _PG_DOWN as exc:
            raise Unavailable("the database is unavailable") from exc

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._connection() as conn:
            await self._guard(conn.execute(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._connection() as conn:
            rows = await self._guard(conn.fetch(sql, *args))
        return [dict(r) for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._connection() as conn:
            row = await self._guard(conn.fetchrow(sql, *args))
        return dict(row) if row is not None else None

    @staticmethod
    async def _guard(awaitable: Any) -> Any:
        try:
            return await awaitable
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateKey(str(exc)) from None
        except _PG_DOWN as exc:
            raise Unavailable("the database is unavailable") from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    yield PostgresDatabase(None, conn, self._dsn)
            except asyncpg.UniqueViolationError as exc:
                raise DuplicateKey(str(exc)) from None
            except _PG_DOWN as exc:
                raise Unavailable("the database is unavailable") from exc

    async def details(self) -> dict[str, Any]:
        row = await self.fetchrow("SELECT current_database() AS name")
        return {"type": "postgresql", "name": row["name"] if row else "", "state": "Open"}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


async def open_database(database_url: str, data_dir: Path) -> Database:
    if database_url:
        return await PostgresDatabase.open(database_url)
    return await SqliteDatabase.open(data_dir / "o16n.db")
