"""Remote Python sessions end to end against real web and compute nodes, in both store modes."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import dill
import pytest
from yarl import URL

from tests.support import WebNode, login, start_compute_node, start_web_node, unique, wait_until
from tests.test_foundation import assert_error


async def add_user(server: WebNode, request: pytest.FixtureRequest, role: str = "") -> str:
    """A second local user, written into the server's store (there is no user API)."""
    from webnode.auth.passwords import hash_password
    from webnode.store.db import open_database
    from webnode.store.users import UserStore

    dsn = request.getfixturevalue("pg_dsn") if server.mode == "cluster" else ""
    db = await open_database(dsn, server.process.log.parent / "data")
    try:
        name = unique(f"user{role.lower()}")
        await UserStore(db).create(name, await hash_password("Other-Passw0rd!", 4), role)
    finally:
        await db.close()
    return name


async def headers_of(server: WebNode, http: aiohttp.ClientSession, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await login(http, server.url, username, 'Other-Passw0rd!')}"}


async def new_session(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], **body: object) -> str:
    async with http.post(f"{server.url}/sessions", json={"runtimeType": "Python", **body}, headers=auth) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["sessionId"])


async def execute(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], sid: str, code: str, **body: object
) -> dict[str, object]:
    async with http.post(f"{server.url}/sessions/{sid}/execute", json={"code": code, **body}, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        result: dict[str, object] = await resp.json()
        return result


@pytest.fixture
async def session_id(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> AsyncIterator[str]:
    sid = await new_session(server, http, auth, name="test")
    yield sid
    async with http.delete(f"{server.url}/sessions/{sid}/force", headers=auth):
        pass


async def test_lifecycle_execute_state_history(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    started = time.perf_counter()
    sid = await new_session(server, http, auth, name="mine")
    created = time.perf_counter() - started
    assert created < 5, created
    async with http.get(f"{server.url}/sessions", headers=auth) as resp:
        listed = await resp.json()
    assert {"id": sid, "name": "mine", "owner": "admin", "runtimeType": "Python"} in listed

    first = await execute(
        server,
        http,
        auth,
        sid,
        "total = a + b\nprint('sum', total)",
        inputParameters=[{"name": "a", "value": 2}, {"name": "b", "value": 3}],
    )
    assert first == {
        "success": True,
        "errorMessage": "",
        "outputParameters": [],
        "consoleOutput": "sum 5\n",
        "changedFiles": [],
    }
    second = await execute(
        server,
        http,
        auth,
        sid,
        "import pandas as pd\ndf = pd.DataFrame({'x': [1, 2]})\ntotal *= 10\nopen('out.txt', 'w').write('hi')",
        outputParameters=["total", "df", "missing"],
    )
    assert second["success"] is True
    assert second["outputParameters"] == [
        {"name": "total", "value": 50},
        {"name": "df", "value": {"x": [1, 2]}},
        {"name": "missing", "value": None},
    ]
    assert second["changedFiles"] == ["out.txt"]
    failing = await execute(server, http, auth, sid, "print('before')\n1 / 0")
    assert failing["success"] is False and failing["errorMessage"] == "ZeroDivisionError: division by zero"
    assert str(failing["consoleOutput"]).startswith("before\n")

    async with http.get(f"{server.url}/sessions/{sid}/history", headers=auth) as resp:
        history = await resp.json()
    assert len(history) == 3 and history[0].startswith("total = a + b") and history[2].endswith("1 / 0")
    async with http.get(f"{server.url}/sessions/{sid}/console-output", headers=auth) as resp:
        assert (await resp.json())["consoleOutput"].startswith("before\n")

    shell = await execute(server, http, auth, sid, "import os\npid = os.getpid()", outputParameters=["pid"])
    pid = int(shell["outputParameters"][0]["value"])

    async with http.delete(f"{server.url}/sessions/{sid}", headers=auth) as resp:
        assert resp.status == 200
    async with http.post(f"{server.url}/sessions/{sid}/execute", json={"code": "1"}, headers=auth) as resp:
        assert resp.status == 404
        assert_error(await resp.json(), 404)
    async with http.get(f"{server.url}/sessions", headers=auth) as resp:
        assert sid not in [s["id"] for s in await resp.json()]

    # Closing answers at once; the session's shell (never reused: it held the session's state) goes.
    async def shell_gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    await wait_until(shell_gone, timeout=10, what="the closed session's shell gone")


async def test_session_errors(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str, request: pytest.FixtureRequest
) -> None:
    base = f"{server.url}/sessions"
    for method, path in (
        ("GET", ""),
        ("POST", ""),
        ("POST", f"/{session_id}/execute"),
        ("GET", f"/{session_id}/files"),
    ):
        async with http.request(method, base + path, json={"code": "1"}) as resp:
            assert resp.status == 401
            assert_error(await resp.json(), 401)
    for path in ("/nope/history", "/nope/workspace", "/nope/files", "/nope/console-output"):
        async with http.get(base + path, headers=auth) as resp:
            assert resp.status == 404
            assert_error(await resp.json(), 404)
    async with http.delete(f"{base}/nope", headers=auth) as resp:
        assert resp.status == 404
    bad_bodies = [
        {"runtimeType": "Julia"},
        {"runtimeType": "Python", "snapshotId": "no-such-snapshot"},
    ]
    for body, status in zip(bad_bodies, (400, 404), strict=True):
        async with http.post(base, json=body, headers=auth) as resp:
            assert resp.status == status
            assert_error(await resp.json(), status)
    async with http.post(base, data=b'{"runtimeType": ', headers={**auth, "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "malformed JSON" in (await resp.json())["message"]
    for body in (
        {},
        {"code": 5},
        {"code": "1", "inputParameters": [{"value": 1}]},
        {"code": "1", "outputParameters": [""]},
    ):
        async with http.post(f"{base}/{session_id}/execute", json=body, headers=auth) as resp:
            assert resp.status == 400, body
            assert_error(await resp.json(), 400)

    # Another user: the session does not exist for them (404, not 403); a Reader may not use sessions (403).
    other = await headers_of(server, http, await add_user(server, request))
    for method, path in (("GET", "/history"), ("POST", "/execute"), ("DELETE", ""), ("GET", "/workspace")):
        async with http.request(method, f"{base}/{session_id}{path}", json={"code": "1"}, headers=other) as resp:
            assert resp.status == 404
            assert_error(await resp.json(), 404)
    async with http.get(base, headers=other) as resp:
        assert session_id not in [s["id"] for s in await resp.json()]
    reader = await headers_of(server, http, await add_user(server, request, "Reader"))
    async with http.post(base, json={"runtimeType": "Python"}, headers=reader) as resp:
        assert resp.status == 403
        assert_error(await resp.json(), 403)


async def test_console_streams_and_cancel_interrupts(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str
) -> None:
    await execute(server, http, auth, session_id, "kept = 41")
    loop = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.05)\n"
    running = asyncio.create_task(execute(server, http, auth, session_id, loop))

    async def partial() -> str | None:
        async with http.get(f"{server.url}/sessions/{session_id}/console-output", headers=auth) as resp:
            text = str((await resp.json())["consoleOutput"])
        return text if "tick 2" in text else None

    text = await wait_until(partial, timeout=20, what="partial console output")
    assert text.startswith("tick 0\n")
    # One execution at a time: a second one is refused with 409 while the first runs.
    async with http.post(f"{server.url}/sessions/{session_id}/execute", json={"code": "1"}, headers=auth) as resp:
        assert resp.status == 409
        assert_error(await resp.json(), 409)
    async with http.get(f"{server.url}/sessions/{session_id}/workspace", headers=auth) as resp:
        assert resp.status == 409
    started = time.perf_counter()
    async with http.post(f"{server.url}/sessions/{session_id}/cancel", headers=auth) as resp:
        assert resp.status == 200
    result = await asyncio.wait_for(running, 10)
    assert time.perf_counter() - started < 1.5
    assert result["success"] is False and "interrupted" in str(result["errorMessage"])
    after = await execute(server, http, auth, session_id, "kept += 1", outputParameters=["kept"])
    assert after["outputParameters"] == [{"name": "kept", "value": 42}]
    async with http.post(f"{server.url}/sessions/{session_id}/cancel", headers=auth) as resp:
        assert resp.status == 200  # nothing running: a no-op


async def test_force_close_kills_a_hung_shell(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    sid = await new_session(server, http, auth)
    hang = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('hanging', flush=True)\nwhile True:\n    time.sleep(1)\n"
    )
    running = asyncio.create_task(http.post(f"{server.url}/sessions/{sid}/execute", json={"code": hang}, headers=auth))

    async def busy() -> bool:
        if running.done():
            response = running.result()
            raise AssertionError(f"the hanging execution ended: {response.status} {await response.text()}")
        async with http.get(f"{server.url}/sessions/{sid}/console-output", headers=auth) as resp:
            return "hanging" in (await resp.json())["consoleOutput"]

    await wait_until(busy, timeout=10, what="the hanging execution")
    started = time.perf_counter()
    async with http.delete(f"{server.url}/sessions/{sid}/force", headers=auth) as resp:
        assert resp.status == 200
    assert time.perf_counter() - started < 5
    response = await asyncio.wait_for(running, 10)
    assert response.status in (410, 500, 503)
    assert_error(await response.json(), response.status)
    response.release()
    async with http.get(f"{server.url}/sessions/{sid}/history", headers=auth) as resp:
        assert resp.status == 404


async def test_files(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str) -> None:
    base = f"{server.url}/sessions/{session_id}/files"

    async def upload(name: str, content: bytes) -> aiohttp.ClientResponse:
        form = aiohttp.FormData()
        form.add_field("file", content, filename=name, content_type="application/octet-stream")
        return await http.post(base, data=form, headers=auth)

    async with await upload("data.csv", b"a,b\n1,2\n") as resp:
        assert resp.status == 201, await resp.text()
    async with await upload("data.csv", b"a,b\n3,4\n") as resp:  # same name: overwritten
        assert resp.status == 201
    async with await upload("empty.bin", b"") as resp:
        assert resp.status == 201
    async with http.get(base, headers=auth) as resp:
        assert await resp.json() == ["data.csv", "empty.bin"]
    async with http.get(f"{base}/data.csv", headers=auth) as resp:
        assert resp.status == 200 and await resp.read() == b"a,b\n3,4\n"
    async with http.get(f"{base}/empty.bin", headers=auth) as resp:
        assert resp.status == 200 and await resp.read() == b""
    result = await execute(
        server, http, auth, session_id, "import pandas as pd\nn = len(pd.read_csv('data.csv'))", outputParameters=["n"]
    )
    assert result["outputParameters"] == [{"name": "n", "value": 1}]
    async with http.delete(f"{base}/data.csv", headers=auth) as resp:
        assert resp.status == 200
    for method in ("GET", "DELETE"):
        async with http.request(method, f"{base}/data.csv", headers=auth) as resp:
            assert resp.status == 404
            assert_error(await resp.json(), 404)

    # Names stay inside the working directory.
    for name in ("../escape.txt", "/etc/passwd", "a/b.txt", "a\\b.txt", "..", "%2e%2e%2fx"):
        async with await upload(name, b"x") as resp:
            assert resp.status == 400, name
            assert_error(await resp.json(), 400)
    for raw in ("..%2Fescape.txt", "%2E%2E", "a%5Cb", "a%00b", "%252e%252e%252fx"):
        async with http.get(URL(f"{base}/{raw}", encoded=True), headers=auth) as resp:
            assert resp.status == 400, raw
            assert_error(await resp.json(), 400)
    # A symlink planted by user code does not lead outside either.
    await execute(server, http, auth, session_id, "import os\nos.symlink('/etc/hostname', 'link')")
    async with http.get(f"{base}/link", headers=auth) as resp:
        assert resp.status == 404
    async with http.post(base, data=b"not multipart", headers=auth) as resp:
        assert resp.status == 400
        assert_error(await resp.json(), 400)
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.txt")
    async with http.post(base, data=form, headers=auth) as resp:
        assert resp.status == 400


async def test_workspace_objects(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str
) -> None:
    base = f"{server.url}/sessions/{session_id}/workspace"
    octet = {**auth, "Content-Type": "application/octet-stream"}
    async with http.post(f"{base}/model", data=dill.dumps({"coef": [1.5, 2.5]}), headers=octet) as resp:
        assert resp.status == 200, await resp.text()
    user_code: dict[str, object] = {"__name__": "__main__"}
    exec("def square(v):\n    return v * v", user_code)  # a function as a notebook user defines it
    async with http.post(f"{base}/square", data=dill.dumps(user_code["square"]), headers=octet) as resp:
        assert resp.status == 200
    result = await execute(server, http, auth, session_id, "y = square(model['coef'][1])", outputParameters=["y"])
    assert result["outputParameters"] == [{"name": "y", "value": 6.25}]
    async with http.get(base, headers=auth) as resp:
        assert await resp.json() == ["model", "square", "y"]
    async with http.get(f"{base}/model", headers=auth) as resp:
        assert resp.status == 200
        assert dill.loads(await resp.read()) == {"coef": [1.5, 2.5]}
    async with http.delete(f"{base}/model", headers=auth) as resp:
        assert resp.status == 200
    for method in ("GET", "DELETE"):
        async with http.request(method, f"{base}/model", headers=auth) as resp:
            assert resp.status == 404
            assert_error(await resp.json(), 404)
    async with http.post(f"{base}/junk", data=b"not dill at all", headers=octet) as resp:
        assert resp.status == 400
        assert_error(await resp.json(), 400)
    async with http.get(URL(f"{base}/a%2Fb", encoded=True), headers=auth) as resp:
        assert resp.status == 400


async def test_snapshots(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str) -> None:
    await execute(
        server, http, auth, session_id, "import numpy as np\nweights = np.arange(5)\nopen('notes.txt', 'w').write('n')"
    )
    async with http.post(f"{server.url}/sessions/{session_id}/snapshot", json={"name": None}, headers=auth) as resp:
        assert resp.status == 201, await resp.text()
        snap = (await resp.json())["snapshotId"]
    async with http.get(f"{server.url}/snapshots", headers=auth) as resp:
        listed = {s["id"]: s for s in await resp.json()}
    assert listed[snap]["owner"] == "admin" and listed[snap]["contentSize"] > 0 and listed[snap]["creationTime"]
    async with http.get(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
        assert resp.status == 200
        content = await resp.read()
    assert len(content) == listed[snap]["contentSize"]
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert {"manifest.json", "workspace.dill", "files/notes.txt"} <= set(names)

    # A new session started from the snapshot has its objects and files.
    fresh = await new_session(server, http, auth, snapshotId=snap)
    try:
        result = await execute(
            server,
            http,
            auth,
            fresh,
            "s = int(weights.sum())\nt = open('notes.txt').read()",
            outputParameters=["s", "t"],
        )
        assert result["outputParameters"] == [{"name": "s", "value": 10}, {"name": "t", "value": "n"}]
        # Load merges: existing objects stay, the snapshot's win, files are overwritten.
        await execute(server, http, auth, fresh, "weights = None\nother = 1\nopen('notes.txt', 'w').write('changed')")
        async with http.post(f"{server.url}/sessions/{fresh}/loadsnapshot/{snap}", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
        result = await execute(
            server,
            http,
            auth,
            fresh,
            "s = int(weights.sum())\nt = open('notes.txt').read()",
            outputParameters=["s", "t", "other"],
        )
        assert result["outputParameters"] == [
            {"name": "s", "value": 10},
            {"name": "t", "value": "n"},
            {"name": "other", "value": 1},
        ]
        async with http.post(f"{server.url}/sessions/{fresh}/loadsnapshot/nope", headers=auth) as resp:
            assert resp.status == 404
            assert_error(await resp.json(), 404)
    finally:
        async with http.delete(f"{server.url}/sessions/{fresh}", headers=auth):
            pass
    async with http.delete(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
        assert resp.status == 200
    for method in ("GET", "DELETE"):
        async with http.request(method, f"{server.url}/snapshots/{snap}", headers=auth) as resp:
            assert resp.status == 404
            assert_error(await resp.json(), 404)
    async with http.get(f"{server.url}/snapshots") as resp:
        assert resp.status == 401


async def test_another_users_snapshot_is_404(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str, request: pytest.FixtureRequest
) -> None:
    async with http.post(f"{server.url}/sessions/{session_id}/snapshot", headers=auth) as resp:
        assert resp.status == 201
        snap = (await resp.json())["snapshotId"]
    other = await headers_of(server, http, await add_user(server, request))
    async with http.get(f"{server.url}/snapshots", headers=other) as resp:
        assert await resp.json() == []
    for method in ("GET", "DELETE"):
        async with http.request(method, f"{server.url}/snapshots/{snap}", headers=other) as resp:
            assert resp.status == 404
    async with http.post(
        f"{server.url}/sessions", json={"runtimeType": "Python", "snapshotId": snap}, headers=other
    ) as resp:
        assert resp.status == 404
        assert_error(await resp.json(), 404)


# ---------------------------------------------------------------------- dedicated nodes
@pytest.fixture(scope="module")
async def small_web(tmp_path_factory: pytest.TempPathFactory, compute_node: str) -> AsyncIterator[WebNode]:
    """A one-box web node with a tiny upload limit and a short idle timeout, on the shared compute node."""
    node = await start_web_node(
        tmp_path_factory.mktemp("small"),
        [compute_node],
        O16N_SESSION_UPLOAD_LIMIT="1000",
        O16N_SESSION_IDLE_TIMEOUT="2",
        O16N_SESSION_SWEEP_INTERVAL="0.5",
    )
    yield node
    node.process.stop()


async def test_upload_limit_413(small_web: WebNode, http: aiohttp.ClientSession) -> None:
    auth = await small_web.headers(http)
    sid = await new_session(small_web, http, auth)
    form = aiohttp.FormData()
    form.add_field("file", b"x" * 5000, filename="big.bin")
    async with http.post(f"{small_web.url}/sessions/{sid}/files", data=form, headers=auth) as resp:
        assert resp.status == 413
        assert_error(await resp.json(), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(5):
            yield b"y" * 1000

    headers = {**auth, "Content-Type": "application/octet-stream"}
    async with http.post(f"{small_web.url}/sessions/{sid}/workspace/big", data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert_error(await resp.json(), 413)
    async with http.get(f"{small_web.url}/sessions/{sid}/files", headers=auth) as resp:
        assert await resp.json() == []  # the partial upload was dropped


async def test_idle_session_is_closed(small_web: WebNode, http: aiohttp.ClientSession) -> None:
    auth = await small_web.headers(http)
    sid = await new_session(small_web, http, auth)

    async def gone() -> bool:
        async with http.get(f"{small_web.url}/sessions", headers=auth) as resp:
            return sid not in [s["id"] for s in await resp.json()]

    await wait_until(gone, timeout=15, what="the idle session to be closed")
    async with http.get(f"{small_web.url}/sessions/{sid}/history", headers=auth) as resp:
        assert resp.status == 404


async def test_killed_compute_node_gives_410(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    compute, uri = await start_compute_node(tmp_path / "compute", O16N_R_ENABLED="false")
    web = await start_web_node(tmp_path / "web", [uri])
    try:
        auth = await web.headers(http)
        sid = await new_session(web, http, auth)
        await execute(web, http, auth, sid, "x = 1")
        compute.kill()
        async with http.post(f"{web.url}/sessions/{sid}/execute", json={"code": "x"}, headers=auth) as resp:
            assert resp.status == 410
            assert_error(await resp.json(), 410)
        # The record is cleaned up: the session is unknown from now on.
        async with http.get(f"{web.url}/sessions", headers=auth) as resp:
            assert await resp.json() == []
        async with http.get(f"{web.url}/sessions/{sid}/history", headers=auth) as resp:
            assert resp.status == 404
    finally:
        web.process.stop()
        compute.stop()


async def test_dead_shell_gives_410_and_others_unaffected(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], session_id: str
) -> None:
    victim = await new_session(server, http, auth)
    await execute(server, http, auth, session_id, "alive = True")
    async with http.post(
        f"{server.url}/sessions/{victim}/execute", json={"code": "import os\nos._exit(3)"}, headers=auth
    ) as resp:
        assert resp.status == 410
        assert_error(await resp.json(), 410)
    async with http.get(f"{server.url}/sessions/{victim}/history", headers=auth) as resp:
        assert resp.status == 404
    result = await execute(server, http, auth, session_id, "alive", outputParameters=["alive"])
    assert result["outputParameters"] == [{"name": "alive", "value": True}]


# ---------------------------------------------------------------------- R sessions
async def test_r_session_execute_workspace_snapshot(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    async with http.post(f"{server.url}/sessions", json={"name": "r"}, headers=auth) as resp:  # R by default
        assert resp.status == 201, await resp.text()
        sid = (await resp.json())["sessionId"]
    python_sid = await new_session(server, http, auth)
    try:
        async with http.get(f"{server.url}/sessions", headers=auth) as resp:
            assert {"id": sid, "name": "r", "owner": "admin", "runtimeType": "R"} in await resp.json()
        first = await execute(
            server,
            http,
            auth,
            sid,
            "total <- a + b\nprint(total)",
            inputParameters=[{"name": "a", "value": 2}, {"name": "b", "value": 3}],
        )
        assert first["success"] is True and first["consoleOutput"] == "[1] 5\n", first
        second = await execute(
            server,
            http,
            auth,
            sid,
            "df <- data.frame(x = c(1, 2))\nm <- matrix(1:4, nrow = 2)\n"
            "total <- total * 10\nwriteLines('hi', 'out.txt')",
            outputParameters=["total", "df", "m", "missing"],
        )
        assert second["outputParameters"] == [
            {"name": "total", "value": 50},
            {"name": "df", "value": {"x": [1, 2]}},
            {"name": "m", "value": [[1, 3], [2, 4]]},
            {"name": "missing", "value": None},
        ], second
        assert second["changedFiles"] == ["out.txt"]
        failing = await execute(server, http, auth, sid, "stop('boom')")
        assert failing["success"] is False and "boom" in str(failing["errorMessage"])

        # Workspace objects travel as RData.
        async with http.get(f"{server.url}/sessions/{sid}/workspace", headers=auth) as resp:
            assert await resp.json() == ["a", "b", "df", "m", "total"]
        async with http.get(f"{server.url}/sessions/{sid}/workspace/df", headers=auth) as resp:
            assert resp.status == 200
            rdata = await resp.read()
        assert rdata[:2] == b"\x1f\x8b" or rdata[:5] == b"RDX3\n"  # gzip-compressed or plain RData
        octet = {**auth, "Content-Type": "application/octet-stream"}
        async with http.post(f"{server.url}/sessions/{sid}/workspace/copy", data=rdata, headers=octet) as resp:
            assert resp.status == 200, await resp.text()
        result = await execute(server, http, auth, sid, "n <- nrow(copy)", outputParameters=["n"])
        assert result["outputParameters"] == [{"name": "n", "value": 2}]
        async with http.post(f"{server.url}/sessions/{sid}/workspace/junk", data=b"not RData", headers=octet) as resp:
            assert resp.status == 400
            assert_error(await resp.json(), 400)
        async with http.delete(f"{server.url}/sessions/{sid}/workspace/copy", headers=auth) as resp:
            assert resp.status == 200
        async with http.get(f"{server.url}/sessions/{sid}/workspace/copy", headers=auth) as resp:
            assert resp.status == 404

        # Snapshots: a fresh R session from it; an R snapshot into a Python session is 400.
        async with http.post(f"{server.url}/sessions/{sid}/snapshot", json={"name": "rsnap"}, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
            snap = (await resp.json())["snapshotId"]
        async with http.get(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
            names = zipfile.ZipFile(io.BytesIO(await resp.read())).namelist()
        assert {"manifest.json", "workspace.RData", "files/out.txt"} <= set(names)
        async with http.post(f"{server.url}/sessions/{python_sid}/loadsnapshot/{snap}", headers=auth) as resp:
            assert resp.status == 400
            assert_error(await resp.json(), 400)
        async with http.post(
            f"{server.url}/sessions", json={"runtimeType": "Python", "snapshotId": snap}, headers=auth
        ) as resp:
            assert resp.status == 400
        async with http.post(
            f"{server.url}/sessions", json={"runtimeType": "R", "snapshotId": snap}, headers=auth
        ) as resp:
            assert resp.status == 201, await resp.text()
            fresh = (await resp.json())["sessionId"]
        result = await execute(
            server, http, auth, fresh, "s <- sum(df$x) + total\nt <- readLines('out.txt')", outputParameters=["s", "t"]
        )
        assert result["outputParameters"] == [{"name": "s", "value": 53}, {"name": "t", "value": "hi"}]
        async with http.delete(f"{server.url}/sessions/{fresh}", headers=auth) as resp:
            assert resp.status == 200
        async with http.delete(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
            assert resp.status == 200
    finally:
        for closing in (sid, python_sid):
            async with http.delete(f"{server.url}/sessions/{closing}/force", headers=auth):
                pass


async def test_r_cancel_and_console(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    async with http.post(f"{server.url}/sessions", json={"runtimeType": "R"}, headers=auth) as resp:
        sid = (await resp.json())["sessionId"]
    try:
        await execute(server, http, auth, sid, "kept <- 41")
        loop = "for (i in 0:600) { cat('tick', i, '\\n'); Sys.sleep(0.05) }"
        running = asyncio.create_task(execute(server, http, auth, sid, loop))

        async def partial() -> bool:
            async with http.get(f"{server.url}/sessions/{sid}/console-output", headers=auth) as resp:
                return "tick 2" in (await resp.json())["consoleOutput"]

        await wait_until(partial, timeout=20, what="partial R console output")
        started = time.perf_counter()
        async with http.post(f"{server.url}/sessions/{sid}/cancel", headers=auth) as resp:
            assert resp.status == 200
        result = await asyncio.wait_for(running, 10)
        assert time.perf_counter() - started < 1.5
        assert result["success"] is False and "interrupt" in str(result["errorMessage"])
        after = await execute(server, http, auth, sid, "kept <- kept + 1", outputParameters=["kept"])
        assert after["outputParameters"] == [{"name": "kept", "value": 42}]
    finally:
        async with http.delete(f"{server.url}/sessions/{sid}/force", headers=auth):
            pass


async def test_web_node_giving_up_leaves_the_session_consistent(
    tmp_path: Path, compute_node: str, http: aiohttp.ClientSession
) -> None:
    """The web node times out an execution (504); the shell's late answer is not served to the next call."""
    web = await start_web_node(tmp_path / "web", [compute_node], O16N_COMPUTE_TIMEOUT="1.5")
    try:
        auth = await web.headers(http)
        sid = await new_session(web, http, auth)
        code = "import time\ntime.sleep(3)\nx = 'late'"
        async with http.post(f"{web.url}/sessions/{sid}/execute", json={"code": code}, headers=auth) as resp:
            assert resp.status == 504
            assert_error(await resp.json(), 504)

        async def answered() -> dict[str, object] | None:
            async with http.post(
                f"{web.url}/sessions/{sid}/execute",
                json={"code": "y = 'next'", "outputParameters": ["x", "y"]},
                headers=auth,
            ) as resp:
                return await resp.json() if resp.status == 200 else None  # 409 while the late one runs

        result = await wait_until(answered, timeout=15, what="the session to be free again")
        assert result["outputParameters"] == [{"name": "x", "value": "late"}, {"name": "y", "value": "next"}]
    finally:
        web.process.stop()


async def test_every_web_node_routes_a_session(
    tmp_path: Path, cluster_server: WebNode, compute_node: str, pg_dsn: str, http: aiohttp.ClientSession
) -> None:
    """Placement is central: another web node on the same store reaches the session, and sees it closed."""
    from tests.support import REDIS_URL

    other = await start_web_node(
        tmp_path / "other",
        [compute_node],
        database_url=pg_dsn,
        redis_url=REDIS_URL,
    )  # its own Redis prefix: no invalidation message reaches it, the compute node's answer must do
    try:
        auth = await cluster_server.headers(http)
        other_auth = await other.headers(http)
        sid = await new_session(cluster_server, http, auth)
        await execute(cluster_server, http, auth, sid, "shared = 'from A'")
        result = await execute(other, http, other_auth, sid, "shared += ' and B'", outputParameters=["shared"])
        assert result["outputParameters"] == [{"name": "shared", "value": "from A and B"}]
        async with http.get(f"{other.url}/sessions", headers=other_auth) as resp:
            assert sid in [s["id"] for s in await resp.json()]
        async with http.delete(f"{cluster_server.url}/sessions/{sid}", headers=auth) as resp:
            assert resp.status == 200
        async with http.post(f"{other.url}/sessions/{sid}/execute", json={"code": "1"}, headers=other_auth) as resp:
            assert resp.status in (404, 410)  # 410 when its cached placement is used, then the record is gone
            assert_error(await resp.json(), resp.status)
        async with http.get(f"{other.url}/sessions/{sid}/history", headers=other_auth) as resp:
            assert resp.status == 404
    finally:
        other.process.stop()


async def test_shell_dying_while_idle_is_swept(tmp_path: Path, compute_node: str, http: aiohttp.ClientSession) -> None:
    web = await start_web_node(tmp_path / "web", [compute_node], O16N_SESSION_SWEEP_INTERVAL="0.3")
    try:
        auth = await web.headers(http)
        sid = await new_session(web, http, auth)
        keep = await new_session(web, http, auth)
        await execute(web, http, auth, sid, "import os, threading\nthreading.Timer(0.3, os._exit, [9]).start()")

        async def swept() -> bool:
            async with http.get(f"{web.url}/sessions", headers=auth) as resp:
                return sid not in [s["id"] for s in await resp.json()]

        await wait_until(swept, timeout=15, what="the record of the dead session to be removed")
        async with http.get(f"{web.url}/sessions/{sid}/history", headers=auth) as resp:
            assert resp.status == 404
        assert (await execute(web, http, auth, keep, "1"))["success"] is True
    finally:
        web.process.stop()


async def test_a_session_taking_a_shell_warms_another(tmp_path: Path) -> None:
    """The pool keeps `initial_size` warm shells while sessions hold theirs; closing one tears its shell down."""
    from computenode.pools import PoolConfig, ShellPool
    from computenode.sessions import SessionRegistry
    from computenode.shells.process import PYTHON

    config = PoolConfig(initial_size=1, max_size=3, acquire_timeout=30, queue_limit=10, max_uses=1000, start_timeout=60)
    pool = ShellPool(PYTHON, config, tmp_path / "pool")
    registry = SessionRegistry(
        {"python": pool}, root=tmp_path / "sessions", cache_dir=tmp_path / "cache", cache_bytes=1 << 20
    )
    await pool.start()
    registry.start()
    try:

        async def warm() -> bool:
            return pool.figures().idle == 1

        await wait_until(warm, timeout=60, what="a warm shell")
        await registry.create("s1", "python", idle_timeout=60)
        assert pool.figures().active == 1
        await wait_until(warm, timeout=60, what="another warm shell while the session holds the first")
        shell = registry.get("s1").shell
        await registry.close_session("s1", force=False)

        async def torn_down() -> bool:
            return shell.poll() is not None and pool.figures().active == 0

        await wait_until(torn_down, timeout=30, what="the closed session's shell stopped")
        assert pool.figures().idle == 1  # the warm one, never given to the session
    finally:
        await registry.close()
        await pool.close()
