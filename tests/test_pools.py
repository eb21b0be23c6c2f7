"""Dedicated pools per service version: POST|GET|DELETE /services/{name}/{version}/pool.

Against real web nodes in both store modes over the shared compute node, plus a
deployment whose second compute node joins after the pool was created.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import (
    Process,
    WebNode,
    free_port,
    grpc_serving,
    spawn,
    start_compute_node,
    start_web_node,
    unique,
    wait_until,
)
from tests.test_services import expect_error
from tests.test_services import second_user as second_user  # the fixture

SLOW_INIT = 2.0  # seconds the initCode takes: a request faster than this found it already run
SERVICE: dict[str, Any] = {
    "initCode": f"import os, time\ntime.sleep({SLOW_INIT})\nINIT_PID = os.getpid()",
    "code": "time.sleep(t)\npid = os.getpid()\npreloaded = INIT_PID == pid",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "t", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "pid", "type": "integer"}, {"name": "preloaded", "type": "logical"}],
}


async def publish(http: aiohttp.ClientSession, url: str, headers: dict[str, str], definition: Any = None) -> str:
    name = unique("pooled")
    async with http.post(f"{url}/services/{name}/1.0", json=definition or SERVICE, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    return name


async def pool_status(http: aiohttp.ClientSession, url: str, headers: dict[str, str], name: str) -> list[Any]:
    async with http.get(f"{url}/services/{name}/1.0/pool", headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert isinstance(body, list)
    return body


async def all_status(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], name: str, wanted: str, timeout: float = 60
) -> list[Any]:
    async def check() -> list[Any] | None:
        body = await pool_status(http, url, headers, name)
        return body if body and all(entry["Status"] == wanted for entry in body) else None

    result: list[Any] = await wait_until(check, timeout=timeout, what=f"pool status {wanted}")
    return result


async def node_pools(http: aiohttp.ClientSession, server: WebNode, headers: dict[str, str], name: str) -> list[Any]:
    async with http.get(f"{server.url}/status", headers=headers) as resp:
        body = await resp.json()
    pools = []
    for node in body["components"]["backends"]["components"].values():
        pools += [p for p in node["details"].get("servicePools", []) if p["service"] == f"{name}/1.0"]
    return pools


async def run(http: aiohttp.ClientSession, url: str, headers: dict[str, str], name: str, t: float) -> dict[str, Any]:
    async with http.post(f"{url}/api/{name}/1.0", json={"t": t}, headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["success"], body
    assert isinstance(body, dict)
    return body


async def test_a_dedicated_pool_is_created_used_reported_and_deleted(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server.url, auth)
    pool_url = f"{server.url}/services/{name}/1.0/pool"
    assert await pool_status(http, server.url, auth, name) == [
        {"ComputeNodeEndpoint": uri, "Status": "NotFound"} for uri in server.compute_uris
    ]
    async with http.post(pool_url, json={"InitialPoolSize": 1, "MaxPoolSize": 1}, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        assert isinstance(await resp.json(), str)
    body = await all_status(http, server.url, auth, name, "Success")
    assert [entry["ComputeNodeEndpoint"] for entry in body] == server.compute_uris

    (figures,) = await node_pools(http, server, auth, name)
    assert figures["runtime"] == "python"
    assert (figures["initialPoolSize"], figures["maxPoolSize"], figures["currentPoolSize"]) == (1, 1, 1)

    # The shell is warm: its initCode already ran, so the first request does not wait for it.
    started = time.monotonic()
    first = await run(http, server.url, auth, name, 0)
    assert time.monotonic() - started < SLOW_INIT, "the dedicated shell was not preloaded"
    assert first["outputParameters"]["preloaded"] is True

    # Max 1: concurrent requests share the one dedicated shell and never borrow a generic one.
    replies = await asyncio.gather(*(run(http, server.url, auth, name, 0.3) for _ in range(3)))
    assert {r["outputParameters"]["pid"] for r in replies} == {first["outputParameters"]["pid"]}

    # Resize: the node follows.
    async with http.post(pool_url, json={"InitialPoolSize": 2, "MaxPoolSize": 3}, headers=auth) as resp:
        assert resp.status == 200

    async def resized() -> bool:
        pools = await node_pools(http, server, auth, name)
        return bool(pools and pools[0]["maxPoolSize"] == 3 and pools[0]["currentPoolSize"] == 2)

    await wait_until(resized, timeout=60, what="the resized pool")

    async with http.delete(pool_url, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    await all_status(http, server.url, auth, name, "NotFound", timeout=5)
    assert await node_pools(http, server, auth, name) == []
    async with http.delete(pool_url, headers=auth) as resp:
        await expect_error(resp, 404)
    # Without its pool the service runs in the generic pool again.
    assert (await run(http, server.url, auth, name, 0))["outputParameters"]["preloaded"] is True


async def test_pool_requests_are_validated(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    name = await publish(http, server.url, auth, {**SERVICE, "initCode": "import os, time\nINIT_PID = 0"})
    pool_url = f"{server.url}/services/{name}/1.0/pool"
    cases: list[tuple[Any, str | None]] = [
        ({"InitialPoolSize": 3, "MaxPoolSize": 2}, "InitialPoolSize"),
        ({"InitialPoolSize": -1, "MaxPoolSize": 2}, "InitialPoolSize"),
        ({"InitialPoolSize": 0, "MaxPoolSize": -2}, "MaxPoolSize"),
        ({"InitialPoolSize": 0, "MaxPoolSize": 0}, "MaxPoolSize"),
        ({"InitialPoolSize": "two", "MaxPoolSize": 2}, "InitialPoolSize"),
        ({"InitialPoolSize": 1.5, "MaxPoolSize": 2}, "InitialPoolSize"),
        ({"InitialPoolSize": True, "MaxPoolSize": 2}, "InitialPoolSize"),
        ({"InitialPoolSize": 1, "MaxPoolSize": 100000}, "MaxPoolSize"),
        ({"InitialPoolSize": 1, "MaxPoolSize": 2, "Size": 3}, "Size"),
        ([1, 2], None),
    ]
    for body, field in cases:
        async with http.post(pool_url, json=body, headers=auth) as resp:
            error = await expect_error(resp, 400, field=field)
        if field:
            assert field in error["message"], error
    async with http.post(pool_url, data=b'{"InitialPoolSize": 1,', headers=auth) as resp:
        assert "malformed JSON" in (await expect_error(resp, 400))["message"]
    async with http.post(pool_url, data=b"", headers=auth) as resp:
        await expect_error(resp, 400)

    missing = f"{server.url}/services/{unique('nothing')}/1.0/pool"
    async with http.post(missing, json={"InitialPoolSize": 1, "MaxPoolSize": 1}, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(missing, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.delete(missing, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.delete(pool_url, headers=auth) as resp:
        await expect_error(resp, 404)  # the service has no pool
    for method in ("POST", "GET", "DELETE"):
        async with http.request(method, pool_url, json={"InitialPoolSize": 1, "MaxPoolSize": 1}) as resp:
            await expect_error(resp, 401)


async def test_only_who_may_manage_the_service_manages_its_pool(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], second_user: Any
) -> None:
    name = await publish(http, server.url, auth, {**SERVICE, "initCode": "import os, time\nINIT_PID = 0"})
    pool_url = f"{server.url}/services/{name}/1.0/pool"
    contributor, reader = await second_user("Contributor"), await second_user("Reader")
    for headers in (contributor, reader):
        async with http.post(pool_url, json={"InitialPoolSize": 0, "MaxPoolSize": 1}, headers=headers) as resp:
            await expect_error(resp, 403)
        async with http.delete(pool_url, headers=headers) as resp:
            await expect_error(resp, 403)
        assert [e["Status"] for e in await pool_status(http, server.url, headers, name)] == ["NotFound"]
    # A contributor manages the pool of a service it published.
    own = await publish(http, server.url, contributor, {**SERVICE, "initCode": "import os, time\nINIT_PID = 0"})
    own_url = f"{server.url}/services/{own}/1.0/pool"
    async with http.post(own_url, json={"InitialPoolSize": 0, "MaxPoolSize": 1}, headers=contributor) as resp:
        assert resp.status == 200, await resp.text()
    async with http.delete(own_url, headers=contributor) as resp:
        assert resp.status == 200, await resp.text()


async def test_deleting_the_service_removes_its_pool(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server.url, auth, {**SERVICE, "initCode": "import os, time\nINIT_PID = 0"})
    async with http.post(
        f"{server.url}/services/{name}/1.0/pool", json={"InitialPoolSize": 1, "MaxPoolSize": 1}, headers=auth
    ) as resp:
        assert resp.status == 200
    await all_status(http, server.url, auth, name, "Success")
    async with http.delete(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        assert resp.status == 200

    async def gone() -> bool:
        return await node_pools(http, server, auth, name) == []

    await wait_until(gone, timeout=15, what="the pool of the deleted service to go")
    # Republished under the same name and version: no pool comes back with it.
    async with http.post(f"{server.url}/services/{name}/1.0", json=SERVICE, headers=auth) as resp:
        assert resp.status == 201
    async with http.get(f"{server.url}/services/{name}/1.0/pool", headers=auth) as resp:
        assert [e["Status"] for e in await resp.json()] == ["NotFound"]


async def compute_node_on(workdir: Path, port: int) -> Process:
    """A small Python-only compute node on a port chosen before it starts (its URI is already listed)."""
    settings = {
        "O16N_COMPUTE_HOST": "127.0.0.1",
        "O16N_COMPUTE_PORT": str(port),
        "O16N_DATA_DIR": str(workdir / "data"),
        "O16N_PYTHON_POOL_INITIAL_SIZE": "0",
        "O16N_PYTHON_POOL_MAX_SIZE": "2",
        "O16N_R_ENABLED": "false",
    }
    process = spawn("computenode", "computenode", settings, workdir)
    target = f"127.0.0.1:{port}"
    await wait_until(lambda: grpc_serving(target), timeout=90, what="compute node", process=process)
    return process


async def test_a_compute_node_that_joins_later_gets_the_pool(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    first, first_uri = await start_compute_node(
        tmp_path / "c1", O16N_R_ENABLED="false", O16N_PYTHON_POOL_INITIAL_SIZE="0"
    )
    port = free_port()
    late_uri = f"http://127.0.0.1:{port}"
    web = await start_web_node(tmp_path / "web", [first_uri, late_uri])
    late = None
    try:
        headers = await web.headers(http)
        name = await publish(http, web.url, headers, {**SERVICE, "initCode": "import os, time\nINIT_PID = os.getpid()"})
        async with http.post(
            f"{web.url}/services/{name}/1.0/pool", json={"InitialPoolSize": 1, "MaxPoolSize": 2}, headers=headers
        ) as resp:
            assert resp.status == 200

        async def first_ready() -> list[str] | None:
            statuses = {e["ComputeNodeEndpoint"]: e["Status"] for e in await pool_status(http, web.url, headers, name)}
            return [statuses[first_uri], statuses[late_uri]] if statuses[first_uri] == "Success" else None

        assert await wait_until(first_ready, timeout=60, what="the first node's pool") == ["Success", "Pending"]
        late = await compute_node_on(tmp_path / "c2", port)
        await all_status(http, web.url, headers, name, "Success")
        # Restarted empty, the first node gets its pool back too.
        first.stop()
        first = await compute_node_on(tmp_path / "c1b", int(first_uri.rsplit(":", 1)[1]))
        await all_status(http, web.url, headers, name, "Success")
    finally:
        web.process.stop()
        first.stop()
        if late is not None:
            late.stop()


async def test_an_r_service_runs_in_its_dedicated_r_pool(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "R",
        "initCode": f"Sys.sleep({SLOW_INIT})\ninit_pid <- Sys.getpid()",
        "code": "pid <- Sys.getpid()\npreloaded <- init_pid == pid",
        "outputParameterDefinitions": [{"name": "pid", "type": "integer"}, {"name": "preloaded", "type": "logical"}],
    }
    name = await publish(http, server.url, auth, definition)
    pool_url = f"{server.url}/services/{name}/1.0/pool"
    async with http.post(pool_url, json={"InitialPoolSize": 1, "MaxPoolSize": 1}, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    await all_status(http, server.url, auth, name, "Success", timeout=90)
    (figures,) = await node_pools(http, server, auth, name)
    assert figures["runtime"] == "r"
    started = time.monotonic()
    async with http.post(f"{server.url}/api/{name}/1.0", json={}, headers=auth) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["success"], body
    assert time.monotonic() - started < SLOW_INIT and body["outputParameters"]["preloaded"] is True
    async with http.delete(pool_url, headers=auth) as resp:
        assert resp.status == 200
