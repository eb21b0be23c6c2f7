"""Shell containment on real processes: cgroups, and shells as an unprivileged OS user.

Cgroups (O16N_SHELL_CGROUP=auto, the default): a process that user code moved out of the
shell's process group (setsid) and forked is still killed with its shell, whether the shell
is recycled or crashes; a fork bomb stops at pids.max (O16N_SHELL_PIDS_LIMIT) with a clean
error, and the node keeps serving; what the shells of a SIGKILLed node left running is killed
by the next node to start.

Shells as `nobody` (O16N_SHELL_RUN_AS_USER, with O16N_SHELL_PYTHON a virtualenv nobody can
run, built by tests/shell_venv.py): a node refuses to start when the user cannot run the
interpreter or reach the data directory; otherwise Python and R services and sessions run
with uid 65534 and cannot find another shell's working directory (its name is unguessable,
shells/ cannot be listed, /proc/<pid>/cwd of a non-dumpable shell is root's), nor read the
data directory or the snapshot cache. With O16N_SHELL_RUN_AS_UIDS each shell has a uid of
its own: a shell cannot read another's directory or signal it even knowing its path and pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.settings import SettingsError
from computenode.cgroups import Cgroups, own_cgroups, parent_name
from computenode.limits import ShellLimits, UidRange, resolve_user
from computenode.pools import PoolConfig, ShellPool
from computenode.shells.process import PYTHON, ShellProcess, ShellSpec
from tests.shell_venv import shell_python
from tests.support import Process, WebNode, spawn, start_compute_node, start_web_node, unique, wait_until
from tests.test_shell_crashes import call, publish

PIDS_LIMIT = 64
NOBODY = 65534


def service(code: str, outputs: dict[str, str], inputs: dict[str, str] | None = None, runtime: str = "Python") -> Any:
    return {
        "code": code,
        "runtimeType": runtime,
        "inputParameterDefinitions": [{"name": k, "type": v} for k, v in (inputs or {}).items()],
        "outputParameterDefinitions": [{"name": k, "type": v} for k, v in outputs.items()],
    }


async def execute(
    http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], sid: str, code: str, outputs: list[str]
) -> dict[str, Any]:
    body = {"code": code, "outputParameters": outputs}
    async with http.post(f"{node.url}/sessions/{sid}/execute", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json()
    assert result["success"], result
    return {p["name"]: p["value"] for p in result["outputParameters"]}


async def new_session(http: aiohttp.ClientSession, node: WebNode, headers: dict[str, str], runtime: str) -> str:
    async with http.post(f"{node.url}/sessions", json={"runtimeType": runtime}, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["sessionId"])


async def _gone(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat_line.rsplit(b")", 1)[1].split()[0] == b"Z"  # a zombie waiting for init


# ---------------------------------------------------------------- cgroups


@pytest.fixture(scope="module")
async def contained(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[WebNode, Process]]:
    workdir = tmp_path_factory.mktemp("contained")
    compute, uri = await start_compute_node(
        workdir / "compute",
        O16N_R_ENABLED="false",
        O16N_PYTHON_POOL_INITIAL_SIZE="2",
        O16N_PYTHON_POOL_MAX_SIZE="2",
        O16N_SHELL_CGROUP="auto",
        O16N_SHELL_PIDS_LIMIT=str(PIDS_LIMIT),
    )
    web = await start_web_node(workdir / "web", [uri])
    yield web, compute
    web.process.stop()
    compute.stop()


def _node_cgroup(compute: Process) -> Path:
    v2, _ = own_cgroups()
    assert v2 is not None
    return v2 / parent_name(compute.popen.pid)


def _processes_per_shell(compute: Process) -> list[int]:
    parent = _node_cgroup(compute)
    return [len((d / "cgroup.procs").read_text().split()) for d in parent.iterdir() if d.is_dir()]


ESCAPE = """import os, time
child = os.fork()
if child == 0:
    os.setsid()  # out of the shell's process group and session
    grandchild = os.fork()
    if grandchild == 0:
        while True:
            time.sleep(1)
    with open(report, 'w') as f:
        f.write(f'{grandchild} {os.getpgid(grandchild)}')
    os._exit(0)
os.waitpid(child, 0)
shell = os.getpid()
"""


@pytest.mark.parametrize("ending", ["recycled", "crashed"])
async def test_a_process_that_left_the_process_group_dies_with_its_shell(
    contained: tuple[WebNode, Process], tmp_path: Path, ending: str
) -> None:
    node, compute = contained
    report = tmp_path / "grandchild"
    code = ESCAPE + ("os._exit(3)\n" if ending == "crashed" else "")
    async with aiohttp.ClientSession() as http:
        headers = await node.headers(http)
        name = await publish(http, node, headers, service(code, {"shell": "integer"}, {"report": "character"}))
        status, body = await call(http, node, headers, name, {"report": str(report)})
        assert status == (500 if ending == "crashed" else 200), body
        grandchild, group = map(int, report.read_text().split())
        if ending == "recycled":
            assert group != body["outputParameters"]["shell"]  # it really left the shell's group
        await wait_until(lambda: _gone(grandchild), timeout=10, what="the escaped grandchild to be killed")
        await wait_until(
            lambda: _async(sorted(_processes_per_shell(compute)) == [1, 1]),
            timeout=30,
            what="two fresh shells, one process each",
        )


async def test_a_fork_bomb_stops_at_pids_max_and_the_node_keeps_serving(contained: tuple[WebNode, Process]) -> None:
    node, compute = contained
    bomb = """import os, time
shell = os.getpid()
while True:
    try:
        os.fork()
    except BlockingIOError:
        if os.getpid() != shell:
            time.sleep(600)
            os._exit(0)
        raise
"""
    async with aiohttp.ClientSession() as http:
        headers = await node.headers(http)
        name = await publish(http, node, headers, service(bomb, {}))
        status, body = await call(http, node, headers, name)
        assert status == 200 and body["success"] is False, body
        assert body["errorMessage"].startswith("BlockingIOError"), body
        ok = await publish(http, node, headers, service("import os\npid = os.getpid()", {"pid": "integer"}))
        status, body = await call(http, node, headers, ok)
        assert status == 200 and body["success"], body
        # The bomb's shell was replaced and every process it forked killed.
        await wait_until(
            lambda: _async(sorted(_processes_per_shell(compute)) == [1, 1]),
            timeout=30,
            what="the bomb's processes to be killed",
        )


async def test_the_next_node_kills_what_the_shells_of_a_killed_node_left(tmp_path: Path) -> None:
    """A compute node killed mid-request leaves its shell and an escaped grandchild running; the next
    node to start on the machine empties and removes the dead node's cgroups."""
    report = tmp_path / "grandchild"
    code = ESCAPE + "with open(report + '.ready', 'w'):\n    pass\ntime.sleep(120)\n"
    first, uri = await start_compute_node(tmp_path / "first", O16N_R_ENABLED="false")
    web = await start_web_node(tmp_path / "web", [uri])
    second = None
    try:
        async with aiohttp.ClientSession() as http:
            headers = await web.headers(http)
            name = await publish(http, web, headers, service(code, {}, {"report": "character"}))
            request = asyncio.get_running_loop().create_task(call(http, web, headers, name, {"report": str(report)}))
            await wait_until(
                lambda: _async(Path(f"{report}.ready").exists()), timeout=30, what="the grandchild to start"
            )
            grandchild = int(report.read_text().split()[0])
            dead_parent = _node_cgroup(first)
            first.kill()  # SIGKILL: no clean-up; its shells (own sessions) and the grandchild live on
            assert not await _gone(grandchild) and dead_parent.exists()
            second, _ = await start_compute_node(tmp_path / "second", O16N_R_ENABLED="false")
            await wait_until(lambda: _gone(grandchild), timeout=10, what="the orphaned grandchild to be killed")
            assert not dead_parent.exists()
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await request  # the web node answers the lost request with an error, if it has not yet
    finally:
        web.process.stop()
        first.stop()
        if second is not None:
            second.stop()


async def test_killing_a_shell_empties_and_removes_its_cgroup(tmp_path: Path) -> None:
    cgroups = Cgroups.setup("auto", PIDS_LIMIT)
    assert cgroups is not None and cgroups.v2 is not None
    shell = ShellProcess(PYTHON, tmp_path, ShellLimits(cgroups=cgroups))
    try:
        await shell.start(60)
        assert shell.pid is not None
        (cgroup,) = [d for d in cgroups.v2.iterdir() if d.is_dir()]
        assert (cgroup / "cgroup.procs").read_text().split() == [str(shell.pid)]
        assert cgroups.pids_parent is not None
        assert (cgroups.pids_parent / cgroup.name / "pids.max").read_text().strip() == str(PIDS_LIMIT)
        await shell.kill()
        assert shell.poll() == -signal.SIGKILL
        assert not cgroup.exists()
    finally:
        await shell.terminate(grace=1)
        shell.cleanup()
        cgroups.close()
    assert not cgroups.v2.exists()


async def test_without_a_writable_cgroup_file_system_the_node_falls_back_to_process_groups(venv_python: str) -> None:
    """As an unprivileged user (nobody) the cgroup file system is read-only: a log line, no cgroups,
    and a pids limit, which cannot be kept, is a start-up error."""
    script = (
        "import logging, sys\n"
        "from common.settings import SettingsError\n"
        "from computenode.cgroups import Cgroups\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "print('cgroups:', Cgroups.setup('auto', 0))\n"
        "try:\n    Cgroups.setup('auto', 10)\nexcept SettingsError as exc:\n    print('refused:', exc)\n"
    )
    nobody = ShellLimits(run_as=resolve_user("nobody"))
    proc = await asyncio.create_subprocess_exec(
        venv_python,
        "-c",
        script,
        cwd="/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=nobody.preexec(),
    )
    out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, out
    assert "WARNING cannot create cgroups under" in out and "contained by process group only" in out, out
    assert "cgroups: None" in out and "refused: O16N_SHELL_PIDS_LIMIT needs cgroups" in out, out


def test_a_pids_limit_needs_cgroups() -> None:
    with pytest.raises(SettingsError, match="O16N_SHELL_PIDS_LIMIT needs O16N_SHELL_CGROUP=auto"):
        Cgroups.setup("off", 10)
    assert Cgroups.setup("off", 0) is None


# ---------------------------------------------------------------- shells as nobody


@pytest.fixture(scope="session")
async def venv_python() -> str:
    """A virtualenv nobody can run, with what a shell imports (built once, cached in /var/cache/o16n-tests)."""
    return await asyncio.to_thread(shell_python)


@pytest.fixture(scope="module")
def reachable_dir() -> Any:
    """A directory nobody can traverse (pytest's own tmp directories are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="o16n-nobody-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
async def as_nobody(venv_python: str, reachable_dir: Path) -> AsyncIterator[tuple[WebNode, Path]]:
    compute, uri = await start_compute_node(
        reachable_dir / "compute",
        O16N_SHELL_RUN_AS_USER="nobody",
        O16N_SHELL_PYTHON=venv_python,
        O16N_PYTHON_POOL_INITIAL_SIZE="2",
        O16N_PYTHON_POOL_MAX_SIZE="3",
        O16N_R_POOL_INITIAL_SIZE="1",
        O16N_R_POOL_MAX_SIZE="2",
    )
    web = await start_web_node(reachable_dir / "web", [uri])
    yield web, reachable_dir / "compute" / "data"
    web.process.stop()
    compute.stop()


@pytest.mark.parametrize("problem", ["interpreter", "data-dir"])
async def test_a_node_refuses_a_run_as_user_that_cannot_run_its_shells(
    venv_python: str, reachable_dir: Path, tmp_path: Path, problem: str
) -> None:
    """The node's own interpreter is under /root (0700); pytest's tmp_path is 0700 too."""
    if problem == "interpreter":
        workdir, python = reachable_dir / unique("refused"), ""
    else:
        workdir, python = tmp_path / "compute", venv_python
    assert os.geteuid() == 0, "the test suite runs as root, which running shells as another user needs"
    env = {
        "O16N_COMPUTE_PORT": "0",
        "O16N_DATA_DIR": str(workdir / "data"),
        "O16N_R_ENABLED": "false",
        "O16N_SHELL_RUN_AS_USER": "nobody",
        "O16N_SHELL_PYTHON": python,
    }
    process = spawn("computenode", "computenode", env, workdir)
    try:
        await wait_until(lambda: _async(not process.alive()), timeout=60, what="the node to refuse to start")
        log = process.log_tail()
        assert process.popen.returncode != 0
        assert "O16N_SHELL_PYTHON" in log and "'nobody'" in log and "Permission denied" in log, log
    finally:
        process.stop()


async def test_python_shells_run_as_nobody_and_see_only_their_own_directory(as_nobody: tuple[WebNode, Path]) -> None:
    node, data_dir = as_nobody
    probe = """import os
def attempt(path):
    try:
        os.listdir(path)
        return 'readable'
    except PermissionError:
        return 'denied'
    except FileNotFoundError:
        return 'missing'
results = [attempt(p) for p in paths.split('\\n')] + [attempt(os.getcwd())]
uid = os.getuid()
"""
    async with aiohttp.ClientSession() as http:
        headers = await node.headers(http)
        # Another user's session: its working directory holds a file, its shell a known pid.
        sid = await new_session(http, node, headers, "Python")
        other = await execute(
            http,
            node,
            headers,
            sid,
            "import os\nopen('secret.txt', 'w').write('s')\ncwd = os.getcwd()\npid = os.getpid()\nuid = os.getuid()",
            ["cwd", "pid", "uid"],
        )
        assert other["uid"] == NOBODY
        workdir = Path(other["cwd"])
        assert workdir.stat().st_uid == NOBODY and stat.S_IMODE(workdir.stat().st_mode) == 0o700
        # Shells of one user can reach a sibling's directory only by its unguessable path, which
        # they cannot learn: not by listing (shells/ is 0711), nor from /proc (non-dumpable, no path in argv).
        assert re.fullmatch(r"python-\d+-\d+-[0-9a-f]{16}", workdir.name), workdir.name
        assert str(workdir) not in Path(f"/proc/{other['pid']}/cmdline").read_text()
        paths = [
            f"/proc/{other['pid']}/cwd",
            str(data_dir.resolve()),
            str(data_dir.resolve() / "shells"),
            str(data_dir.resolve() / "snapshot-cache"),
        ]
        name = await publish(
            http, node, headers, service(probe, {"results": "vector", "uid": "integer"}, {"paths": "character"})
        )
        status, body = await call(http, node, headers, name, {"paths": "\n".join(paths)})
        assert status == 200 and body["success"], body
        assert body["outputParameters"] == {"results": ["denied"] * len(paths) + ["readable"], "uid": NOBODY}
        # Snapshots work: the shell saves its workspace, as nobody, into its home; a session started
        # from the snapshot, and a file uploaded into it, are nobody's: the shell can rewrite them.
        await execute(http, node, headers, sid, "kept = 41", [])
        async with http.post(f"{node.url}/sessions/{sid}/snapshot", json={"name": None}, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            snapshot = (await resp.json())["snapshotId"]
        async with http.delete(f"{node.url}/sessions/{sid}", headers=headers) as resp:
            assert resp.status == 200
        async with http.post(
            f"{node.url}/sessions", json={"runtimeType": "Python", "snapshotId": snapshot}, headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()
            restored = str((await resp.json())["sessionId"])
        form = aiohttp.FormData()
        form.add_field("file", b"uploaded", filename="up.txt", content_type="application/octet-stream")
        async with http.post(f"{node.url}/sessions/{restored}/files", data=form, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        rewrite = "for n in ('secret.txt', 'up.txt'):\n    open(n, 'a').write('!')\nkept += 1\nuid = os.getuid()"
        out = await execute(http, node, headers, restored, "import os\n" + rewrite, ["kept", "uid"])
        assert out == {"kept": 42, "uid": NOBODY}
        async with http.delete(f"{node.url}/sessions/{restored}", headers=headers) as resp:
            assert resp.status == 200


UIDS = (200100, 200119)


@pytest.fixture(scope="module")
async def per_shell_uids(venv_python: str, reachable_dir: Path) -> AsyncIterator[WebNode]:
    compute, uri = await start_compute_node(
        reachable_dir / "compute-uids",
        O16N_SHELL_RUN_AS_UIDS=f"{UIDS[0]}-{UIDS[1]}",
        O16N_SHELL_PYTHON=venv_python,
        O16N_R_ENABLED="false",
        O16N_PYTHON_POOL_INITIAL_SIZE="2",
        O16N_PYTHON_POOL_MAX_SIZE="3",
    )
    web = await start_web_node(reachable_dir / "web-uids", [uri])
    yield web
    web.process.stop()
    compute.stop()


async def test_shells_with_uids_of_their_own_cannot_reach_each_other(per_shell_uids: WebNode) -> None:
    """O16N_SHELL_RUN_AS_UIDS: even knowing the path and pid, a shell cannot read or signal another."""
    node = per_shell_uids
    probe = """import os, signal
def attempt(action):
    try:
        action()
        return 'done'
    except PermissionError:
        return 'denied'
results = [
    attempt(lambda: os.listdir(workdir)),
    attempt(lambda: open(os.path.join(workdir, 'secret.txt')).read()),
    attempt(lambda: os.kill(pid, signal.SIGTERM)),
]
uid = os.getuid()
"""
    async with aiohttp.ClientSession() as http:
        headers = await node.headers(http)
        sid = await new_session(http, node, headers, "Python")
        code = "import os\nopen('secret.txt', 'w').write('s')\ncwd = os.getcwd()\npid = os.getpid()\nuid = os.getuid()"
        other = await execute(http, node, headers, sid, code, ["cwd", "pid", "uid"])
        assert UIDS[0] <= other["uid"] <= UIDS[1]
        assert Path(other["cwd"]).stat().st_uid == other["uid"]
        name = await publish(
            http,
            node,
            headers,
            service(probe, {"results": "vector", "uid": "integer"}, {"workdir": "character", "pid": "integer"}),
        )
        status, body = await call(http, node, headers, name, {"workdir": other["cwd"], "pid": other["pid"]})
        assert status == 200 and body["success"], body
        out = body["outputParameters"]
        assert out["results"] == ["denied", "denied", "denied"], out
        assert UIDS[0] <= out["uid"] <= UIDS[1] and out["uid"] != other["uid"]
        # The session still works: nothing reached it.
        assert await execute(http, node, headers, sid, "x = open('secret.txt').read()", ["x"]) == {"x": "s"}


def test_uid_range_settings_are_checked() -> None:
    for text in ("", "200000", "5-10", "200010-200000", "a-b"):
        with pytest.raises(SettingsError, match="O16N_SHELL_RUN_AS_UIDS"):
            UidRange.parse(text)
    with pytest.raises(SettingsError, match="not both"):
        ShellLimits.from_settings(0, 0, 0, "nobody", "200000-200010")
    uids = UidRange.parse("200000-200001")
    first, second = uids.take(), uids.take()
    assert (first.uid, second.uid) == (200000, 200001)
    with pytest.raises(OSError, match="no free uid"):
        uids.take()
    uids.give_back(first)
    assert uids.take().uid == 200000


async def test_r_shells_run_as_nobody(as_nobody: tuple[WebNode, Path]) -> None:
    node, data_dir = as_nobody
    code = "user <- Sys.info()[['effective_user']]\nlisted <- length(list.files(data_dir))\nwd <- getwd()"
    async with aiohttp.ClientSession() as http:
        headers = await node.headers(http)
        name = await publish(
            http,
            node,
            headers,
            service(
                code, {"user": "character", "listed": "integer", "wd": "character"}, {"data_dir": "character"}, "R"
            ),
        )
        status, body = await call(http, node, headers, name, {"data_dir": str(data_dir.resolve())})
        assert status == 200 and body["success"], body
        out = body["outputParameters"]
        assert out["user"] == "nobody" and out["listed"] == 0, out  # the data directory cannot be listed
        assert Path(out["wd"]).stat().st_uid == NOBODY
        sid = await new_session(http, node, headers, "R")
        result = await execute(http, node, headers, sid, "user <- Sys.info()[['effective_user']]", ["user"])
        assert result == {"user": "nobody"}


async def test_a_pool_of_nobody_shells(venv_python: str, reachable_dir: Path) -> None:
    """Driven directly: the user is resolved at start, the working directory handed to it."""
    with pytest.raises(SettingsError, match="no such user"):
        resolve_user("no-such-user-o16n")
    with pytest.raises(SettingsError, match="unprivileged"):
        resolve_user("root")
    config = PoolConfig(
        initial_size=0,
        max_size=1,
        acquire_timeout=5,
        queue_limit=10,
        max_uses=1000,
        start_timeout=60,
        limits=ShellLimits(run_as=resolve_user("nobody")),
    )
    root = reachable_dir / unique("pool")
    root.mkdir(mode=0o711)
    pool = ShellPool(ShellSpec("python", PYTHON.module, python=venv_python), config, root)
    try:
        shell = await pool.acquire()
        header, _ = await shell.request({"op": "ping"}, timeout=10)
        assert _uid(header["pid"]) == NOBODY and shell.root.stat().st_uid == NOBODY
        assert stat.S_IMODE(shell.root.stat().st_mode) == 0o700
        assert str(shell.root) not in Path(f"/proc/{header['pid']}/cmdline").read_text()
        await pool.release(shell)
    finally:
        await pool.close()


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("Uid:"))
    return int(line.split()[1])


async def _async(value: bool) -> bool:
    return value
