"""A request that reaches a compute node but finds no free shell (it never ran) is retried on another node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support import Process, free_port, start_web_node, wait_until
from tests.test_cluster import SECRET, WHO, node_status, publish, served_by, start_compute

SLOW = {
    "code": "import os, time\ntime.sleep(x)\nnode = os.getppid()",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "node", "type": "numeric"}],
}


async def test_no_free_shell_on_one_node_runs_on_the_other(
    tmp_path: Path, processes: list[Process], http: aiohttp.ClientSession
) -> None:
    small = {
        "O16N_PYTHON_POOL_INITIAL_SIZE": "1",
        "O16N_PYTHON_POOL_MAX_SIZE": "1",
        "O16N_SHELL_ACQUIRE_TIMEOUT": "0.3",
    }
    busy, free = await asyncio.gather(
        start_compute(tmp_path / "busy", free_port(), **small), start_compute(tmp_path / "free", free_port(), **small)
    )
    processes += [busy.process, free.process]
    env = {"O16N_COMPUTE_SECRET": SECRET}
    # `occupier` only knows the busy node; `router` knows both (its own store: separate lists).
    occupier = await start_web_node(tmp_path / "occupier", [busy.uri], **env)
    router = await start_web_node(tmp_path / "router", [busy.uri, free.uri], **env)
    processes += [occupier.process, router.process]
    occupier_auth, router_auth = await occupier.headers(http), await router.headers(http)

    slow = await publish(http, occupier.url, occupier_auth, SLOW)
    async with http.post(f"{occupier.url}/api/{slow}/1.0", json={"x": 0}, headers=occupier_auth) as resp:
        assert resp.status == 200, await resp.text()  # loaded and warm
    who = await publish(http, router.url, router_auth, WHO)
    for _ in range(4):  # warm: load `who` wherever the router sends it
        await served_by(http, router.url, router_auth, who)

    # The busy node's only shell sleeps 4 s for the occupier; the router does not see that load.
    hold = asyncio.get_running_loop().create_task(
        http.post(f"{occupier.url}/api/{slow}/1.0", json={"x": 4}, headers=occupier_auth)
    )

    async def shell_taken() -> bool:
        return any(pool.active == 1 for pool in (await node_status(busy.uri)).pools)

    await wait_until(shell_taken, timeout=10, what="the busy node's shell taken")
    served = [await served_by(http, router.url, router_auth, who) for _ in range(6)]
    assert set(served) == {free.process.popen.pid}, served  # each one that met the busy node ran on the free one
    async with await hold as resp:
        assert resp.status == 200


async def test_requests_queued_on_a_killed_node_run_on_the_other(
    tmp_path: Path, processes: list[Process], http: aiohttp.ClientSession
) -> None:
    """SIGKILL of a node with requests waiting for its only shell: they never ran, so they run elsewhere."""
    small = {
        "O16N_PYTHON_POOL_INITIAL_SIZE": "1",
        "O16N_PYTHON_POOL_MAX_SIZE": "1",
        "O16N_SHELL_ACQUIRE_TIMEOUT": "60",
    }
    doomed, other = await asyncio.gather(
        start_compute(tmp_path / "doomed", free_port(), **small),
        start_compute(tmp_path / "other", free_port(), **small),
    )
    processes += [doomed.process, other.process]
    env = {"O16N_COMPUTE_SECRET": SECRET}
    occupier = await start_web_node(tmp_path / "occupier", [doomed.uri], **env)
    router = await start_web_node(tmp_path / "router", [doomed.uri, other.uri], **env)
    processes += [occupier.process, router.process]
    occupier_auth, router_auth = await occupier.headers(http), await router.headers(http)
    slow = await publish(http, occupier.url, occupier_auth, SLOW)
    async with http.post(f"{occupier.url}/api/{slow}/1.0", json={"x": 0}, headers=occupier_auth) as resp:
        assert resp.status == 200, await resp.text()
    who = await publish(http, router.url, router_auth, WHO)
    for _ in range(4):
        await served_by(http, router.url, router_auth, who)

    # The doomed node's only shell sleeps for the occupier; the router's requests queue behind it.
    hold = asyncio.get_running_loop().create_task(
        http.post(f"{occupier.url}/api/{slow}/1.0", json={"x": 30}, headers=occupier_auth)
    )

    async def shell_taken() -> bool:
        return any(pool.active == 1 for pool in (await node_status(doomed.uri)).pools)

    await wait_until(shell_taken, timeout=10, what="the doomed node's shell taken")
    # Ten concurrent requests through the router: the least-loaded placement spreads them, and
    # those placed on the doomed node wait there for its shell.
    waiting = [asyncio.get_running_loop().create_task(served_by(http, router.url, router_auth, who)) for _ in range(10)]

    async def some_queued() -> bool:
        return any(pool.queued > 0 for pool in (await node_status(doomed.uri)).pools)

    await wait_until(some_queued, timeout=10, what="requests queued on the doomed node")
    queued = sum(pool.queued for pool in (await node_status(doomed.uri)).pools)
    doomed.process.kill()
    served = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    # Every request ran, on the surviving node; the one running on the dead node failed with a 503.
    assert set(served) == {other.process.popen.pid}, served
    assert queued >= 1
    async with await hold as resp:
        body = await resp.json()
        assert resp.status == 503, body
        assert body["code"] == 503 and body["message"], body
