"""Fixtures: a real compute node, and web nodes in both store modes (SQLite one-box; Postgres + Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import (
    REDIS_URL,
    Process,
    WebNode,
    create_database,
    drop_database,
    start_compute_node,
    start_web_node,
)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("o16n")


@pytest.fixture(scope="session")
async def compute_node(session_dir: Path) -> AsyncIterator[str]:
    """One compute node process shared by the session (Python and R pools)."""
    process, uri = await start_compute_node(session_dir / "compute")
    yield uri
    process.stop()


@pytest.fixture(scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    dsn = await create_database()
    yield dsn
    await drop_database(dsn)


@pytest.fixture(scope="session")
async def onebox_server(session_dir: Path, compute_node: str) -> AsyncIterator[WebNode]:
    node = await start_web_node(session_dir / "onebox", [compute_node])
    yield node
    node.process.stop()


@pytest.fixture(scope="session")
async def cluster_server(session_dir: Path, compute_node: str, pg_dsn: str) -> AsyncIterator[WebNode]:
    node = await start_web_node(session_dir / "cluster", [compute_node], database_url=pg_dsn, redis_url=REDIS_URL)
    yield node
    node.process.stop()


@pytest.fixture(scope="session", params=["onebox", "cluster"])
def server(request: pytest.FixtureRequest) -> WebNode:
    """The API tests run once against each store mode."""
    node: WebNode = request.getfixturevalue(f"{request.param}_server")
    return node


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def auth(server: WebNode, http: aiohttp.ClientSession) -> dict[str, str]:
    return await server.headers(http)


@pytest.fixture
def processes() -> list[Process]:
    """Processes a test starts for itself; stopped at teardown."""
    started: list[Process] = []
    yield started  # type: ignore[misc]
    for process in started:
        process.stop()
