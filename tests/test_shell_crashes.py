"""Shell robustness through the HTTP API and on real shell processes.

User code that segfaults, exits, loops forever, exhausts memory or forks a runaway child
gets a clean JSON answer, the pool replaces the shell, the next request works and other
requests are unaffected. Requests wait for a busy pool, then fail 503. Shells are reset
between requests, isolated (0700 working directory, rlimits) and can be cancelled. Shells
in cgroups and as another OS user: tests/test_containment.py.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.errors import PoolExhausted, ShellCrashed
from computenode.limits import ShellLimits
from computenode.pools import PoolConfig, ShellPool
from computenode.shells.process import PYTHON, R, ShellProcess, ShellSpec
from tests.support import WebNode, start_compute_node, start_web_node, unique, wait_until
from tests.test_services import expect_error

EXECUTION_TIMEOUT = 4.0
ACQUIRE_TIMEOUT = 1.5
MEMORY_LIMIT_MB = 1024
CEILING_MB = 300


def service(code: str, outputs: dict[str, str] | None = None, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": k, "type": v} for k, v in (inputs or {}).items()],
        "outputParameterDefinitions": [{"name": k, "type": v} for k, v in (outputs or {}).items()],
    }


@pytest.fixture(scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebNode]:
    """A one-box web node over its own compute node: 2 Python shells, short timeouts, limits."""
    workdir = tmp_path_factory.mktemp("crashes")
    compute, uri = await start_compute_node(
        workdir / "compute",
        O16N_R_ENABLED="false",
        O16N_PYTHON_POOL_INITIAL_SIZE="2",
        O16N_PYTHON_POOL_MAX_SIZE="2",
        O16N_SHELL_ACQUIRE_TIMEOUT=str(ACQUIRE_TIMEOUT),
        O16N_EXECUTION_TIMEOUT=str(EXECUTION_TIMEOUT),
        O16N_SHELL_MEMORY_LIMIT_MB=str(MEMORY_LIMIT_MB),
        O16N_SHELL_MEMORY_CEILING_MB=str(CEILING_MB),
        O16N_SHELL_OPEN_FILES_LIMIT="256",
    )
    web = await start_web_node(workdir / "web", [uri])
    yield web
    web.process.stop()
    compute.stop()


@pytest.fixture(scope="module")
async def headers(node: WebNode) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        return await node.headers(http)


async def publish(http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], definition: Any) -> str:
    name = unique("crash")
    async with http.post(f"{node.url}/services/{name}/1.0", json=definition, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    return name


async def call(
    http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], name: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{node.url}/api/{name}/1.0", json=body or {}, headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.fixture(scope="module")
async def pid_service(node: WebNode, headers: dict[str, str]) -> str:
    """A service answering with its shell's pid: proves the next request works, and in which shell."""
    async with aiohttp.ClientSession() as http:
        return await publish(http, node, headers, service("import os\npid = os.getpid()", {"pid": "integer"}))


async def next_request_works(http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], name: str) -> int:
    status, body = await call(http, node, headers, name)
    assert status == 200 and body["success"], body
    return int(body["outputParameters"]["pid"])


async def shells_alive(http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], count: int) -> None:
    async def ready() -> bool:
        async with http.get(f"{node.url}/status", headers=headers) as resp:
            (backend,) = (await resp.json())["components"]["backends"]["components"].values()
        return bool(backend["details"]["pythonIdleShellCount"] == count)

    await wait_until(ready, timeout=30, what=f"{count} idle shells")


# ---------------------------------------------------------------- crashes through the HTTP API


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("import ctypes\nctypes.string_at(0)", "killed by SIGSEGV"),
        ("import os\nos._exit(3)", "exit code 3"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
    ],
    ids=["segfault", "os._exit", "sigkill"],
)
async def test_a_dying_shell_gives_500_json_and_is_replaced(
    node: WebNode, headers: dict[str, str], pid_service: str, code: str, says: str
) -> None:
    async with aiohttp.ClientSession() as http:
        name = await publish(http, node, headers, service(code))
        async with http.post(f"{node.url}/api/{name}/1.0", json={}, headers=headers) as resp:
            body = await expect_error(resp, 500)
        assert body["error"] == "shell_crashed" and says in body["message"], body
        await next_request_works(http, node, headers, pid_service)
        await shells_alive(http, node, headers, 2)  # the pool is back to its initial size


async def test_endless_loop_gets_504_within_the_time_limit(
    node: WebNode, headers: dict[str, str], pid_service: str
) -> None:
    async with aiohttp.ClientSession() as http:
        name = await publish(http, node, headers, service("while True:\n    pass"))
        started = time.monotonic()
        async with http.post(f"{node.url}/api/{name}/1.0", json={}, headers=headers) as resp:
            body = await expect_error(resp, 504)
        elapsed = time.monotonic() - started
        assert body["error"] == "timeout" and "replaced" in body["message"]
        assert EXECUTION_TIMEOUT <= elapsed < EXECUTION_TIMEOUT + 3, elapsed
        await next_request_works(http, node, headers, pid_service)


async def test_memory_exhaustion_is_a_user_error(node: WebNode, headers: dict[str, str], pid_service: str) -> None:
    """RLIMIT_AS makes the allocation fail inside the shell: success false, and the shell lives on."""
    async with aiohttp.ClientSession() as http:
        name = await publish(http, node, headers, service(f"hog = bytearray({2 * MEMORY_LIMIT_MB} * 1024 * 1024)"))
        status, body = await call(http, node, headers, name)
        assert status == 200 and body["success"] is False
        assert body["errorMessage"].startswith("MemoryError")
        await next_request_works(http, node, headers, pid_service)


async def test_a_shell_past_the_memory_ceiling_is_recycled(node: WebNode, headers: dict[str, str]) -> None:
    code = (
        f"import os, sys\nsys.hog = b'x' * ({CEILING_MB} + 50) * 1024 * 1024  # survives the request\npid = os.getpid()"
    )
    async with aiohttp.ClientSession() as http:
        name = await publish(http, node, headers, service(code, {"pid": "integer"}))
        status, body = await call(http, node, headers, name)
        assert status == 200 and body["success"], body
        fat = body["outputParameters"]["pid"]
        await wait_until(lambda: _gone(fat), timeout=10, what="the fat shell to exit")


@pytest.mark.parametrize(
    "code",
    [
        "import os, time\nchild = os.fork()\nif child == 0:\n    while True:\n        time.sleep(0.05)\n",
        # Orphaned through a shell (`cmd &`): reparented to the shell, a child subreaper.
        "import subprocess\nsubprocess.run('sleep 300 & echo $! > bg.pid', shell=True)\n"
        "child = int(open('bg.pid').read())",
    ],
    ids=["fork", "orphaned-background-process"],
)
async def test_a_runaway_child_dies_with_its_shell(node: WebNode, headers: dict[str, str], code: str) -> None:
    async with aiohttp.ClientSession() as http:
        name = await publish(http, node, headers, service(code, {"child": "integer"}))
        status, body = await call(http, node, headers, name)
        assert status == 200 and body["success"], body
        child = body["outputParameters"]["child"]
        assert child > 0
        await wait_until(lambda: _gone(child), timeout=10, what="the runaway child to be killed")


async def test_a_crash_leaves_concurrent_requests_alone(
    node: WebNode, headers: dict[str, str], pid_service: str
) -> None:
    async with aiohttp.ClientSession() as http:
        await shells_alive(http, node, headers, 2)
        slow = await publish(
            http,
            node,
            headers,
            service("import time\ntime.sleep(1)\nresult = x * 2", {"result": "numeric"}, {"x": "numeric"}),
        )
        crash = await publish(http, node, headers, service("import ctypes\nctypes.string_at(0)"))
        (status_ok, ok), (status_crash, _) = await asyncio.gather(
            call(http, node, headers, slow, {"x": 21}), call(http, node, headers, crash)
        )
        assert status_ok == 200 and ok["outputParameters"] == {"result": 42}, ok
        assert status_crash == 500
        await next_request_works(http, node, headers, pid_service)


# ---------------------------------------------------------------- pool exhaustion


async def test_requests_queue_for_a_busy_pool_then_fail_503(node: WebNode, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as http:
        await shells_alive(http, node, headers, 2)
        short = await publish(
            http, node, headers, service("import time\ntime.sleep(0.5)\ndone = True", {"done": "logical"})
        )
        # Three requests, two shells: the third waits in the queue and runs when one frees.
        replies = await asyncio.gather(*(call(http, node, headers, short) for _ in range(3)))
        assert [status for status, _ in replies] == [200, 200, 200], replies
        assert all(body["outputParameters"] == {"done": True} for _, body in replies)

        long = await publish(http, node, headers, service("import time\ntime.sleep(3)"))
        started = time.monotonic()
        first, second, third = await asyncio.gather(*(_timed_call(http, node, headers, long) for _ in range(3)))
        statuses = sorted(status for status, _, _ in (first, second, third))
        assert statuses == [200, 200, 503], (first, second, third)
        _, body, elapsed = next(r for r in (first, second, third) if r[0] == 503)
        assert body["error"] == "pool_exhausted" and "busy" in body["message"], body
        assert ACQUIRE_TIMEOUT <= elapsed < ACQUIRE_TIMEOUT + 1.5, elapsed
        assert time.monotonic() - started < 3 + 2


async def _timed_call(
    http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], name: str
) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    status, body = await call(http, node, headers, name)
    return status, body, time.monotonic() - started


# ---------------------------------------------------------------- reset and isolation


async def test_nothing_leaks_between_requests(node: WebNode, headers: dict[str, str]) -> None:
    code = """import os
pid = os.getpid()
cwd = os.getcwd()
seen = ('leaked' in globals(), os.path.exists('leak.txt'), os.path.exists('sub'))
leaked = 1
open('leak.txt', 'w').write('secret')
os.makedirs('sub/dir', exist_ok=True)
open('sub/dir/f.txt', 'w').write('x')
os.chdir('/tmp')
saw_leak = any(seen)
"""
    async with aiohttp.ClientSession() as http:
        await shells_alive(http, node, headers, 2)
        name = await publish(
            http, node, headers, service(code, {"pid": "integer", "cwd": "character", "saw_leak": "logical"})
        )
        results = [(await call(http, node, headers, name))[1] for _ in range(4)]
    assert all(r["success"] for r in results), results
    outputs = [r["outputParameters"] for r in results]
    assert len({o["pid"] for o in outputs}) < len(outputs), "the requests never shared a shell"
    assert not any(o["saw_leak"] for o in outputs), outputs
    assert len({o["cwd"] for o in outputs if o["pid"] == outputs[0]["pid"]}) == 1
    assert all(o["cwd"] != "/tmp" for o in outputs)
    assert sorted(results[0]["changedFiles"]) == ["leak.txt", "sub/dir/f.txt"]


async def test_shells_are_isolated_and_limited(node: WebNode, headers: dict[str, str]) -> None:
    code = """import os, resource, stat
mode = oct(stat.S_IMODE(os.stat('.').st_mode))
limits = [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_NOFILE, resource.RLIMIT_CPU)]
group = os.getpgrp() == os.getpid()
"""
    async with aiohttp.ClientSession() as http:
        name = await publish(
            http, node, headers, service(code, {"mode": "character", "limits": "vector", "group": "logical"})
        )
        status, body = await call(http, node, headers, name)
    assert status == 200 and body["success"], body
    out = body["outputParameters"]
    assert out["mode"] == "0o700"
    assert out["limits"] == [MEMORY_LIMIT_MB << 20, 256, resource.RLIM_INFINITY]
    assert out["group"] is True


# ---------------------------------------------------------------- real shells, driven directly


@pytest.fixture
async def shell(tmp_path: Path) -> AsyncIterator[ShellProcess]:
    proc = ShellProcess(PYTHON, tmp_path)
    await proc.start(60)
    yield proc
    await proc.terminate(grace=1)
    proc.cleanup()


async def _load(shell: ShellProcess, code: str) -> None:
    header, _ = await shell.request(
        {
            "op": "load",
            "service": {"key": "s/1@1", "code": code, "init_code": "", "inputs": [], "outputs": [], "output_files": []},
        },
        timeout=30,
    )
    assert header["ok"], header


async def test_cancel_interrupts_within_a_second_and_keeps_the_shell(shell: ShellProcess) -> None:
    await _load(shell, "while True:\n    pass")
    running = asyncio.get_running_loop().create_task(
        shell.request({"op": "execute", "key": "s/1@1"}, b"{}", timeout=30)
    )
    await wait_until(_true_when(lambda: shell.busy), timeout=5, what="the execution to start")
    started = time.monotonic()
    assert await shell.cancel(grace=1.0) is True
    header, _ = await running
    assert time.monotonic() - started < 1.0
    assert header["success"] is False and header["error"] == "execution interrupted"
    reply, _ = await shell.request({"op": "ping"}, timeout=5)
    assert reply["ok"] and shell.poll() is None


async def test_cancel_kills_a_shell_that_ignores_the_interrupt(shell: ShellProcess) -> None:
    await _load(shell, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")
    running = asyncio.get_running_loop().create_task(
        shell.request({"op": "execute", "key": "s/1@1"}, b"{}", timeout=30)
    )
    await wait_until(_true_when(lambda: shell.busy), timeout=5, what="the execution to start")
    started = time.monotonic()
    assert await shell.cancel(grace=0.5) is False
    with pytest.raises(ShellCrashed, match="cancelled"):
        await running
    assert time.monotonic() - started < 3
    assert shell.poll() == -signal.SIGKILL


def _pool(tmp_path: Path, **changes: Any) -> ShellPool:
    config = PoolConfig(
        initial_size=1, max_size=1, acquire_timeout=0.5, queue_limit=10, max_uses=1000, start_timeout=60
    )
    return ShellPool(PYTHON, PoolConfig(**{**config.__dict__, **changes}), tmp_path)


async def test_pool_recycles_after_max_uses_and_times_out_when_busy(tmp_path: Path) -> None:
    pool = _pool(tmp_path, max_uses=2)
    await pool.start()
    try:
        await wait_until(_true_when(lambda: pool.figures().idle == 1), timeout=60, what="a warm shell")
        first = await pool.acquire()
        with pytest.raises(PoolExhausted, match="busy"):
            await pool.acquire()
        assert pool.figures().active == 1
        await pool.release(first)
        again = await pool.acquire()
        assert again is first
        await pool.release(again)  # second use: replaced (max_uses under 10: no successor started ahead)
        await wait_until(_true_when(lambda: pool.figures().idle == 1), timeout=60, what="the replacement")
        third = await pool.acquire()
        assert third is not first and first.poll() is not None
        assert pool.figures().recycled == 1
        await pool.release(third)
    finally:
        await pool.close()


async def test_a_shell_near_max_uses_has_its_successor_ready_when_it_leaves(tmp_path: Path) -> None:
    pool = _pool(tmp_path, max_uses=10)  # the successor starts at 9 uses (a tenth ahead)
    await pool.start()
    try:
        await wait_until(_true_when(lambda: pool.figures().idle == 1), timeout=60, what="a warm shell")
        worn = await pool.acquire()
        for _ in range(8):
            await pool.release(worn)
            assert await pool.acquire() is worn
        assert pool.figures().current_size == 1
        await pool.release(worn)  # 9 uses: its successor starts; it serves on meanwhile
        await wait_until(_true_when(lambda: pool.figures().idle == 2), timeout=60, what="the successor")
        assert pool.figures().current_size == 2  # one over MaxSize until the worn one leaves
        assert await pool.acquire() is worn
        await pool.release(worn)  # 10 uses: it leaves, and its successor is already there
        successor = await asyncio.wait_for(pool.acquire(), 0.1)
        assert successor is not worn and successor.poll() is None
        figures = pool.figures()
        assert (figures.current_size, figures.recycled) == (1, 1)
        await wait_until(_true_when(lambda: worn.poll() is not None), timeout=10, what="the worn shell's exit")
        await pool.release(successor)
        assert pool.figures().current_size == 1
    finally:
        await pool.close()


async def test_a_queued_request_gets_the_shell_released_before_its_timeout(tmp_path: Path) -> None:
    pool = _pool(tmp_path, acquire_timeout=5)
    await pool.start()
    try:
        held = await pool.acquire()
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await wait_until(_true_when(lambda: pool.figures().queued == 1), timeout=5, what="a queued request")
        await pool.release(held)
        assert await asyncio.wait_for(waiting, 2) is held
        await pool.release(held)
    finally:
        await pool.close()


async def test_a_request_that_starts_a_shell_takes_one_freed_before_it_is_ready(tmp_path: Path) -> None:
    """With every shell busy and room to grow, a request starts a shell but is served by whichever
    comes first: a busy shell freed a moment later, not 0.25 s of shell start."""
    pool = _pool(tmp_path, max_size=2, acquire_timeout=30)
    await pool.start()
    try:
        await wait_until(_true_when(lambda: pool.figures().idle == 1), timeout=60, what="a warm shell")
        busy = await pool.acquire()
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await wait_until(_true_when(lambda: pool.figures().current_size == 2), timeout=10, what="a shell starting")
        started = time.monotonic()
        await pool.release(busy)
        second = await asyncio.wait_for(waiting, 10)
        assert second is busy and time.monotonic() - started < 0.2
        # The shell it started joins the idle ones.
        await wait_until(_true_when(lambda: pool.figures().idle == 1), timeout=60, what="the new shell")
        await pool.release(second)
        assert pool.figures().idle == 2
    finally:
        await pool.close()


async def test_a_shell_that_cannot_start_fails_the_request_that_started_it(tmp_path: Path) -> None:
    pool = ShellPool(
        ShellSpec("python", "computenode.shells.python_child", python=str(tmp_path / "no-python")),
        PoolConfig(initial_size=0, max_size=1, acquire_timeout=30, queue_limit=10, max_uses=10, start_timeout=10),
        tmp_path,
    )
    try:
        started = time.monotonic()
        with pytest.raises(ShellCrashed, match="could not start a python shell"):
            await pool.acquire()
        assert time.monotonic() - started < 5  # at once, not after the acquire timeout
    finally:
        await pool.close()


async def test_the_cpu_limit_ends_a_spinning_shell(tmp_path: Path) -> None:
    shell = ShellProcess(PYTHON, tmp_path, ShellLimits(cpu_seconds=4))
    await shell.start(60)
    try:
        await _load(shell, "while True:\n    pass")
        with pytest.raises(ShellCrashed, match=r"SIGXCPU|SIGKILL"):
            await shell.request({"op": "execute", "key": "s/1@1"}, b"{}", timeout=60)
    finally:
        await shell.terminate(grace=1)
        shell.cleanup()


async def test_a_pool_resized_below_its_busy_shells_shrinks_as_they_return(tmp_path: Path) -> None:
    pool = _pool(tmp_path, initial_size=0, max_size=2)
    try:
        a, b = await asyncio.gather(pool.acquire(), pool.acquire())
        pool.resize(0, 1)
        await pool.release(a)
        await pool.release(b)
        figures = pool.figures()
        assert (figures.current_size, figures.idle, figures.max_size) == (1, 1, 1)
        assert a.poll() is not None and b.poll() is None
    finally:
        await pool.close()


async def test_a_waiter_cancelled_after_its_wake_up_passes_the_shell_on(tmp_path: Path) -> None:
    pool = _pool(tmp_path, acquire_timeout=10)
    await pool.start()
    try:
        held = await pool.acquire()
        loop = asyncio.get_running_loop()
        first, second = loop.create_task(pool.acquire()), loop.create_task(pool.acquire())
        await wait_until(_true_when(lambda: pool.figures().queued == 2), timeout=5, what="two queued requests")
        await pool.release(held)  # wakes the first waiter...
        first.cancel()  # ...whose client goes away before it runs
        await asyncio.wait([first], timeout=2)
        if not first.cancelled():  # Python 3.11's wait_for may swallow a late cancellation
            await pool.release(first.result())
        assert await asyncio.wait_for(second, 2) is held  # the free shell was not lost
        await pool.release(held)
    finally:
        await pool.close()


# ---------------------------------------------------------------- helpers


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def _true_when(check: Any) -> Any:
    async def predicate() -> bool:
        return bool(check())

    return predicate


async def test_r_quit_gives_500_json_and_the_r_shell_is_replaced(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    """On the shared node (R enabled): quit() in R ends the shell; the next R request works."""
    ok = {
        "runtimeType": "R",
        "code": "pid <- Sys.getpid()",
        "outputParameterDefinitions": [{"name": "pid", "type": "integer"}],
    }
    for code, says in (
        ("quit(save = 'no', status = 3)", "exit code 3"),
        ("tools::pskill(Sys.getpid(), 11)", "SIGSEGV"),
    ):
        name = unique("rcrash")
        async with http.post(
            f"{server.url}/services/{name}/1.0", json={"runtimeType": "R", "code": code}, headers=auth
        ) as resp:
            assert resp.status == 201, await resp.text()
        async with http.post(f"{server.url}/api/{name}/1.0", json={}, headers=auth) as resp:
            body = await expect_error(resp, 500)
        assert body["error"] == "shell_crashed" and says in body["message"], body
    name = unique("rok")
    async with http.post(f"{server.url}/services/{name}/1.0", json=ok, headers=auth) as resp:
        assert resp.status == 201
    async with http.post(f"{server.url}/api/{name}/1.0", json={}, headers=auth) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["success"] and body["outputParameters"]["pid"] > 0, body


async def test_an_r_background_process_dies_with_its_shell(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "R",
        "code": "system('sleep 300 & echo $! > bg.pid')\nchild <- as.integer(readLines('bg.pid'))",
        "outputParameterDefinitions": [{"name": "child", "type": "integer"}],
    }
    name = unique("rfork")
    async with http.post(f"{server.url}/services/{name}/1.0", json=definition, headers=auth) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(f"{server.url}/api/{name}/1.0", json={}, headers=auth) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["success"], body
    child = body["outputParameters"]["child"]
    await wait_until(lambda: _gone(child), timeout=10, what="the R shell's background process to be killed")


async def test_cancel_interrupts_an_r_shell_within_a_second(tmp_path: Path) -> None:
    shell = ShellProcess(R, tmp_path)
    await shell.start(120)
    try:
        await _load(shell, "repeat { x <- 1 }")
        running = asyncio.get_running_loop().create_task(
            shell.request({"op": "execute", "key": "s/1@1"}, b"{}", timeout=30)
        )
        await wait_until(_true_when(lambda: shell.busy), timeout=5, what="the execution to start")
        started = time.monotonic()
        assert await shell.cancel(grace=1.0) is True
        header, _ = await running
        assert time.monotonic() - started < 1.0
        assert header["success"] is False, header
        reply, _ = await shell.request({"op": "ping"}, timeout=5)
        assert reply["ok"] and shell.poll() is None
    finally:
        await shell.terminate(grace=1)
        shell.cleanup()


async def test_queued_requests_get_shells_in_arrival_order(tmp_path: Path) -> None:
    """A newcomer never takes a freed shell ahead of requests already queued (no starvation at high load)."""
    pool = _pool(tmp_path, acquire_timeout=10)
    await pool.start()
    try:
        held = await pool.acquire()
        loop = asyncio.get_running_loop()
        order: list[str] = []

        async def take(name: str) -> None:
            shell = await pool.acquire()
            order.append(name)
            await pool.release(shell)

        queued = [loop.create_task(take(f"queued-{i}")) for i in range(3)]
        await wait_until(_true_when(lambda: pool.figures().queued == 3), timeout=5, what="three queued requests")
        await pool.release(held)
        newcomer = loop.create_task(take("newcomer"))  # arrives while the freed shell is being handed over
        await asyncio.wait_for(asyncio.gather(*queued, newcomer), 10)
        assert order == ["queued-0", "queued-1", "queued-2", "newcomer"]
    finally:
        await pool.close()
