"""Web services whose snapshot is large (tens of MB): the zip travels to a compute node's snapshot
cache, not inside the service definition, and each shell restores it before initCode.

Against the shared servers (both store modes) for Python and R, plus a deployment of its own
whose compute nodes lose the snapshot: a node that never had it, one whose small cache
evicted it, and a dedicated pool created afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import Process, WebNode, start_compute_node, start_web_node, unique, wait_until
from tests.test_pools import all_status
from tests.test_services import consume, expect_error, publish

BLOB = 35 << 20  # bytes of the Python object in the snapshot
R_BLOB = 30 << 20
MAKE_PYTHON = f"import os\nblob = os.urandom({BLOB})\nopen('model.txt', 'w').write('weights v1')"
PYTHON_SERVICE: dict[str, Any] = {
    "runtimeType": "Python",
    "initCode": "prefix = 'init saw ' + open('model.txt').read()",  # the files are there before initCode
    "code": "n = len(blob) + x\nnote = prefix + ' / ' + open('model.txt').read()",
    "inputParameterDefinitions": [{"name": "x", "type": "integer"}],
    "outputParameterDefinitions": [{"name": "n", "type": "integer"}, {"name": "note", "type": "character"}],
}


async def snapshot_of(url: str, http: aiohttp.ClientSession, auth: dict[str, str], runtime: str, code: str) -> str:
    """A snapshot of a new session of `runtime` after `code` (the session is closed afterwards)."""
    async with http.post(f"{url}/sessions", json={"runtimeType": runtime}, headers=auth) as resp:
        assert resp.status in (200, 201), await resp.text()
        session = (await resp.json())["sessionId"]
    try:
        async with http.post(f"{url}/sessions/{session}/execute", json={"code": code}, headers=auth) as resp:
            body = await resp.json()
            assert body["success"] is True, body
        async with http.post(f"{url}/sessions/{session}/snapshot", json={"name": "big"}, headers=auth) as resp:
            assert resp.status in (200, 201), await resp.text()
            return str((await resp.json())["snapshotId"])
    finally:
        async with http.delete(f"{url}/sessions/{session}", headers=auth):
            pass


async def delete_snapshot(url: str, http: aiohttp.ClientSession, auth: dict[str, str], snapshot: str) -> int:
    """Delete the user's snapshot (as Microsoft's client does right after publishing); its size."""
    async with http.get(f"{url}/snapshots", headers=auth) as resp:
        size = next(s["contentSize"] for s in await resp.json() if s["id"] == snapshot)
    async with http.delete(f"{url}/snapshots/{snapshot}", headers=auth) as resp:
        assert resp.status == 200
    return int(size)


async def publish_big_python(url: str, http: aiohttp.ClientSession, auth: dict[str, str]) -> tuple[str, float]:
    """A Python service carrying a 35 MB object and a file; (name, seconds to publish and first consume)."""
    snapshot = await snapshot_of(url, http, auth, "Python", MAKE_PYTHON)
    started = time.monotonic()
    name = unique("bigpy")
    async with http.post(
        f"{url}/services/{name}/1.0", json={**PYTHON_SERVICE, "snapshotId": snapshot}, headers=auth
    ) as r:
        assert r.status == 201, await r.text()
    assert await delete_snapshot(url, http, auth, snapshot) > BLOB
    await expect_big_python(url, http, auth, name)
    return name, time.monotonic() - started


async def expect_big_python(url: str, http: aiohttp.ClientSession, auth: dict[str, str], name: str) -> None:
    async with http.post(f"{url}/api/{name}/1.0", json={"x": 1}, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["success"], body
    assert body["outputParameters"] == {"n": BLOB + 1, "note": "init saw weights v1 / weights v1"}, body


async def test_a_python_service_carries_a_35_mb_snapshot(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name, seconds = await publish_big_python(server.url, http, auth)
    print(f"\n{server.mode}: 35 MB Python snapshot service, publish + first consume: {seconds:.2f} s")
    # Later requests (other shells of the pool load it too) answer the same.
    for _ in range(3):
        await expect_big_python(server.url, http, auth, name)
    async with http.get(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        own = (await resp.json())["snapshotId"]
    assert own  # the service's own copy, which the compute node received by id


async def test_an_r_service_carries_a_30_mb_snapshot(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    code = f"blob <- as.raw(sample(0:255, {R_BLOB}, replace = TRUE))\nwriteLines('r v1', 'model.txt')"
    snapshot = await snapshot_of(server.url, http, auth, "R", code)
    definition = {
        "runtimeType": "R",
        "initCode": "prefix <- paste('init saw', readLines('model.txt'))",
        "code": "n <- length(blob) + x\nnote <- paste(prefix, '/', readLines('model.txt'))\nraw <- is.raw(blob)",
        "inputParameterDefinitions": [{"name": "x", "type": "integer"}],
        "outputParameterDefinitions": [
            {"name": "n", "type": "integer"},
            {"name": "note", "type": "character"},
            {"name": "raw", "type": "logical"},
        ],
    }
    started = time.monotonic()
    name = await publish(http, server, auth, {**definition, "snapshotId": snapshot})
    assert await delete_snapshot(server.url, http, auth, snapshot) > R_BLOB
    result = await consume(http, server, auth, name, {"x": 2})
    print(f"\n{server.mode}: 30 MB R snapshot service, publish + first consume: {time.monotonic() - started:.2f} s")
    assert result["outputParameters"] == {"n": R_BLOB + 2, "note": "init saw r v1 / r v1", "raw": True}, result


async def test_a_python_service_refuses_an_r_snapshot(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    snapshot = await snapshot_of(server.url, http, auth, "R", "x <- 1")
    try:
        async with http.post(
            f"{server.url}/services/{unique('mixed')}/1.0",
            json={**PYTHON_SERVICE, "snapshotId": snapshot},
            headers=auth,
        ) as resp:
            body = await expect_error(resp, 400, field="snapshotId")
        assert "taken in a R session" in body["message"]
    finally:
        await delete_snapshot(server.url, http, auth, snapshot)


async def test_compute_nodes_that_lack_the_snapshot_get_it_again(
    tmp_path: Path, http: aiohttp.ClientSession, processes: list[Process]
) -> None:
    python_only = {"O16N_R_ENABLED": "false", "O16N_PYTHON_POOL_INITIAL_SIZE": "1", "O16N_PYTHON_POOL_MAX_SIZE": "2"}
    first, first_uri = await start_compute_node(tmp_path / "c1", **python_only)
    processes.append(first)
    web = await start_web_node(tmp_path / "web", [first_uri])
    processes.append(web.process)
    auth = await web.headers(http)
    name, _ = await publish_big_python(web.url, http, auth)
    small = await snapshot_of(web.url, http, auth, "Python", "tiny = 7")
    other = await publish(
        http, web, auth, {**PYTHON_SERVICE, "code": "n = tiny + x\nnote = ''", "initCode": "", "snapshotId": small}
    )

    # A node that never had the snapshot, whose cache holds one zip at most and whose shells serve
    # one request each (so every request loads the service in a fresh shell, from the cache).
    second, second_uri = await start_compute_node(
        tmp_path / "c2", **python_only, O16N_SNAPSHOT_CACHE_BYTES="1", O16N_SHELL_MAX_USES="1"
    )
    processes.append(second)
    async with http.post(f"{web.url}/computenodes", json={"entries": [second_uri]}, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    first.stop()
    async with http.get(f"{web.url}/services/{name}/1.0", headers=auth) as resp:
        cached = tmp_path / "c2" / "data" / "snapshot-cache" / f"{(await resp.json())['snapshotId']}.zip"
    assert not cached.exists()
    await expect_big_python(web.url, http, auth, name)
    assert cached.stat().st_size > BLOB
    # The other service's zip evicts this one from the node's cache: the next fresh shell finds
    # it missing, the node answers ServiceNotLoaded, and the web node sends it again.
    for _ in range(2):
        assert (await consume(http, web, auth, other, {"x": 1}))["outputParameters"]["n"] == 8
        assert not cached.exists()
        await expect_big_python(web.url, http, auth, name)
        assert cached.exists()

    # A dedicated pool created afterwards: its shells restore the snapshot as they start.
    async with http.post(
        f"{web.url}/services/{name}/1.0/pool", json={"InitialPoolSize": 1, "MaxPoolSize": 1}, headers=auth
    ) as resp:
        assert resp.status == 200, await resp.text()
    await all_status(http, web.url, auth, name, "Success", timeout=90)

    async def answered() -> bool:
        await expect_big_python(web.url, http, auth, name)
        return True

    await wait_until(answered, timeout=30, what="the pooled service")
