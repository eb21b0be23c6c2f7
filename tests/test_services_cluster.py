"""Two web nodes on one Postgres + Redis: service definitions cached per node, invalidated across nodes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import REDIS_URL, WebNode, start_web_node
from tests.test_batch import SLOW, start, wait_complete
from tests.test_services import ADD, consume, expect_error, publish


@pytest.fixture(scope="module")
async def pair(session_dir: Path, compute_node: str, pg_dsn: str) -> AsyncIterator[tuple[WebNode, WebNode]]:
    prefix = f"o16n-pair-{uuid.uuid4().hex[:8]}:"
    nodes = [
        await start_web_node(
            session_dir / f"pair-{i}", [compute_node], database_url=pg_dsn, redis_url=REDIS_URL, redis_prefix=prefix
        )
        for i in range(2)
    ]
    yield nodes[0], nodes[1]
    for node in nodes:
        node.process.stop()


async def test_patch_on_one_node_is_seen_by_the_other(
    pair: tuple[WebNode, WebNode], http: aiohttp.ClientSession
) -> None:
    a, b = pair
    auth_a, auth_b = await a.headers(http), await b.headers(http)
    name = await publish(http, a, auth_a, ADD)
    # B caches the definition on its first consume.
    assert (await consume(http, b, auth_b, name, {"x": 2, "y": 3}))["outputParameters"] == {"result": 5}
    async with http.patch(f"{a.url}/services/{name}/1.0", json={"code": "result = x * y"}, headers=auth_a) as resp:
        assert resp.status == 200
    # The invalidation travels over Redis pub/sub; poll briefly rather than assume it is instant.
    for _ in range(100):
        if (await consume(http, b, auth_b, name, {"x": 2, "y": 3}))["outputParameters"] == {"result": 6}:
            break
    assert (await consume(http, b, auth_b, name, {"x": 2, "y": 3}))["outputParameters"] == {"result": 6}
    async with http.delete(f"{a.url}/services/{name}/1.0", headers=auth_a) as resp:
        assert resp.status == 200
    for _ in range(100):
        async with http.post(f"{b.url}/api/{name}/1.0", json={"x": 1, "y": 1}, headers=auth_b) as resp:
            if resp.status == 404:
                await expect_error(resp, 404)
                break
    else:
        raise AssertionError("web node B still serves a deleted service")


async def test_a_batch_started_on_one_node_is_answered_by_the_other(
    pair: tuple[WebNode, WebNode], http: aiohttp.ClientSession
) -> None:
    a, b = pair
    auth_a, auth_b = await a.headers(http), await b.headers(http)
    name = await publish(http, a, auth_a, SLOW)
    execution = await start(http, a, auth_a, name, [{"x": i, "delay": 0.01} for i in range(3)], parallel=3)
    body = await wait_complete(http, b, auth_b, name, execution)
    assert [r["outputParameters"]["result"] for r in body["batchExecutionResults"]] == [0, 1, 2]
    async with http.delete(f"{b.url}/api/{name}/1.0/batch/{execution}", headers=auth_b) as resp:
        assert resp.status == 200
    async with http.get(f"{a.url}/api/{name}/1.0/batch/{execution}", headers=auth_a) as resp:
        await expect_error(resp, 404)
