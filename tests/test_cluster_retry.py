"""Requests that reach a compute node but never run there are retried on another node.

Two cases: the node has no free shell (the request is refused at once), and the node is
SIGKILLed while the request waits there for a shell.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from computenode.services import QUEUED_NOTICE_AFTER
from tests.support import Process, free_port, start_web_node, wait_until
from tests.test_cluster import SECRET, WHO, ComputeNodeProcess, node_status, publish, served_by, start_compute

SLOW = {
    "code": "import os, time\ntime.sleep(x)\nnode = os.getppid()",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "node", "type": "numeric"}],
}


@dataclass
class Occupied:
    """Two one-shell compute nodes; the `busy` one's shell runs a slow request for `occupier`,
    a web node that knows only it, while `router` (its own store and list) knows both."""

    busy: ComputeNodeProcess
    free: ComputeNodeProcess
    router: str
    router_auth: dict[str, str]
    who: str  # a service answering which node ran it
    hold: asyncio.Task[aiohttp.ClientResponse]  # the occupier's slow request


async def occupy(
    tmp_path: Path, processes: list[Process], http: aiohttp.ClientSession, *, acquire_timeout: float, hold_for: float
) -> Occupied:
    small = {
        "O16N_PYTHON_POOL_INITIAL_SIZE": "1",
        "O16N_PYTHON_POOL_MAX_SIZE": "1",
        "O16N_SHELL_ACQUIRE_TIMEOUT": str(acquire_timeout),
    }
    busy, free = await asyncio.gather(
        start_compute(tmp_path / "busy", free_port(), **small), start_compute(tmp_path / "free", free_port(), **small)
    )
    processes += [busy.process, free.process]
    env = {"O16N_COMPUTE_SECRET": SECRET}
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

    hold = asyncio.get_running_loop().create_task(
        http.post(f"{occupier.url}/api/{slow}/1.0", json={"x": hold_for}, headers=occupier_auth)
    )

    async def shell_taken() -> bool:
        return any(pool.active == 1 for pool in (await node_status(busy.uri)).pools)

    await wait_until(shell_taken, timeout=10, what="the busy node's shell taken")
    return Occupied(busy, free, router.url, router_auth, who, hold)


async def test_no_free_shell_on_one_node_runs_on_the_other(
    tmp_path: Path, processes: list[Process], http: aiohttp.ClientSession
) -> None:
    # The busy node's only shell sleeps 4 s for the occupier; the router does not see that load.
    nodes = await occupy(tmp_path, processes, http, acquire_timeout=0.3, hold_for=4)
    served = [await served_by(http, nodes.router, nodes.router_auth, nodes.who) for _ in range(6)]
    assert set(served) == {nodes.free.process.popen.pid}, served  # each one that met the busy node ran on the free one
    async with await nodes.hold as resp:
        assert resp.status == 200


async def test_requests_queued_on_a_killed_node_run_on_the_other(
    tmp_path: Path, processes: list[Process], http: aiohttp.ClientSession
) -> None:
    """SIGKILL of a node with requests waiting for its only shell: they never ran, so they run elsewhere."""
    nodes = await occupy(tmp_path, processes, http, acquire_timeout=60, hold_for=30)
    # Ten concurrent requests through the router: the least-loaded placement spreads them, and
    # those placed on the busy node wait there for its shell.
    loop = asyncio.get_running_loop()
    waiting = [loop.create_task(served_by(http, nodes.router, nodes.router_auth, nodes.who)) for _ in range(10)]

    settled_at: list[float] = []

    async def reported_queued() -> bool:
        """Every request either answered (by the free node) or waits for the busy node's shell,
        for long enough that the node has reported it QUEUED (after QUEUED_NOTICE_AFTER)."""
        queued = sum(pool.queued for pool in (await node_status(nodes.busy.uri)).pools)
        if not (queued >= 1 and queued + sum(task.done() for task in waiting) == len(waiting)):
            settled_at.clear()
            return False
        settled_at[:1] = settled_at[:1] or [loop.time()]
        return loop.time() - settled_at[0] >= 10 * QUEUED_NOTICE_AFTER

    await wait_until(reported_queued, timeout=10, what="requests queued on the busy node, and reported")
    nodes.busy.process.kill()
    served = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    # Every request ran, on the surviving node; the one running on the dead node failed with a 503.
    assert set(served) == {nodes.free.process.popen.pid}, served
    async with await nodes.hold as resp:
        body = await resp.json()
        assert resp.status == 503, body
        assert body["code"] == 503 and body["message"], body
