"""Both store backends (embedded SQLite, Postgres) pass the same suite, on the real databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.errors import Conflict, NotFound, Unauthorized, Unavailable
from tests.support import create_database, drop_database
from webnode.store.config import ConfigStore
from webnode.store.db import Database, PostgresDatabase, SqliteDatabase, open_database
from webnode.store.migrations import MIGRATIONS, migrate
from webnode.store.services import Parameter, Service, ServiceStore
from webnode.store.tokens import RefreshTokenStore
from webnode.store.users import UserStore


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database: Database = await open_database("", tmp_path)
        yield database
        await database.close()
    else:
        dsn = await create_database()
        database = await open_database(dsn, tmp_path)
        yield database
        await database.close()
        await drop_database(dsn)


async def test_migrations_apply_once_and_are_idempotent(db: Database) -> None:
    version = await migrate(db)
    assert version == MIGRATIONS[-1][0]
    assert await migrate(db) == version
    rows = await db.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [v for v, _, _ in MIGRATIONS]


async def test_concurrent_migrations_do_not_collide(db: Database) -> None:
    await asyncio.gather(migrate(db), migrate(db))
    rows = await db.fetch("SELECT count(*) AS n FROM schema_migrations")
    assert rows[0]["n"] == len(MIGRATIONS)


async def test_services_round_trip_conflict_and_not_found(db: Database) -> None:
    await migrate(db)
    store = ServiceStore(db)
    service = Service(
        name="add",
        version="1.0",
        runtime="Python",
        code="result = x + y",
        owner="admin",
        inputs=(Parameter("x", "numeric"), Parameter("y", "numeric")),
        outputs=(Parameter("result", "numeric"),),
        output_files=("plot.png",),
        description="Addition ✓",
    )
    await store.create(service)
    assert await store.get("add", "1.0") == service
    with pytest.raises(Conflict):
        await store.create(service)
    later = Service(name="add", version="2.0", runtime="R", code="result <- x + y", owner="bob")
    await store.create(later)
    assert [s.version for s in await store.list("add")] == ["1.0", "2.0"]
    patched = Service(**{**service.__dict__, "code": "result = x * y", "revision": 2})
    await store.replace(patched)
    assert (await store.get("add", "1.0")).code == "result = x * y"
    assert (await store.get("add", "1.0")).key == "add/1.0@2"
    await store.delete("add", "1.0")
    with pytest.raises(NotFound):
        await store.get("add", "1.0")


async def test_users_and_config(db: Database) -> None:
    await migrate(db)
    users = UserStore(db)
    await users.create("alice", "hash", "Reader")
    with pytest.raises(Conflict):
        await users.create("alice", "other")
    await users.set_password("alice", "hash2")
    alice = await users.get("alice")
    assert alice is not None and alice.password_hash == "hash2" and alice.role == "Reader"
    assert await users.get("nobody") is None
    config = ConfigStore(db)
    assert await config.get("k") is None
    assert await config.set_if_absent("k", {"a": [1]}) == {"a": [1]}
    assert await config.set_if_absent("k", {"b": 2}) == {"a": [1]}
    await config.set("k", ["x"])
    assert await config.get("k") == ["x"]


async def test_refresh_tokens_rotate_and_detect_reuse(db: Database) -> None:
    await migrate(db)
    store = RefreshTokenStore(db, idle_lifetime=3600, max_lifetime=7200)
    first = await store.issue("alice")
    second, chain = await store.rotate(first.token)
    assert chain == first.chain_id == second.chain_id and second.token != first.token
    with pytest.raises(Unauthorized):
        await store.rotate(first.token)  # reuse of a rotated token ends the chain
    with pytest.raises(Unauthorized):
        await store.rotate(second.token)
    with pytest.raises(Unauthorized):
        await store.rotate("garbage")
    assert chain in await store.revoked_chains_since(0)


async def test_transactions_roll_back(db: Database) -> None:
    await migrate(db)
    config = ConfigStore(db)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await ConfigStore(tx).set("in-tx", 1)
            raise RuntimeError("abort")
    assert await config.get("in-tx") is None


async def test_unreachable_postgres_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await PostgresDatabase.open("postgresql://postgres@127.0.0.1:1/none")


async def test_sqlite_file_lives_in_the_data_dir(tmp_path: Path) -> None:
    database = await SqliteDatabase.open(tmp_path / "d" / "o16n.db")
    await migrate(database)
    assert (tmp_path / "d" / "o16n.db").exists()
    assert (await database.details())["type"] == "sqlite"
    await database.close()
