"""Redis and Postgres restarted under load: web nodes reconnect by themselves, requests that need
the missing dependency get 503 JSON (never a 500 or a traceback), and nothing stored is lost.

This uses its OWN Postgres (initdb in a temp dir, on a free port) and its OWN redis-server, so
restarting them does not disturb anything else running on the machine.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import Process, WebNode, free_port, login, start_web_node, wait_until
from tests.test_cluster import ADD, SECRET, LoadBalancer, add, publish, set_nodes, start_compute

pytestmark = pytest.mark.cluster
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PREFIX = "o16n-restarts:"  # both web nodes on the same channels (of their own redis-server)


async def _run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"{argv}: {output.decode(errors='replace')}"


class OwnPostgres:
    """A throwaway Postgres cluster run as the postgres OS user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="o16n-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def _as_postgres(self, *argv: str) -> None:
        await _run("runuser", "-u", "postgres", "--", *argv)

    async def init(self) -> None:
        await self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        await self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )

    async def stop(self, mode: str = "fast") -> None:
        await self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    async def remove(self) -> None:
        try:
            await self.stop("immediate")
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


def _spawn(argv: list[str], log: Path) -> Process:
    handle = open(log, "ab")  # noqa: SIM115 (kept open by the child)
    popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Process(argv[0], popen, log)


class OwnRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = _spawn(argv, log)

        async def ready() -> bool:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.close()
            return True

        await wait_until(ready, timeout=10, what="redis-server", process=self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()


@dataclass
class Deps:
    postgres: OwnPostgres
    redis: OwnRedis
    webs: list[WebNode]
    balancer: LoadBalancer
    compute_uri: str


@pytest.fixture(scope="module")
async def deps(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deps]:
    root = tmp_path_factory.mktemp("restarts")
    postgres = OwnPostgres()
    await postgres.init()
    await postgres.start()
    redis = OwnRedis(root / "redis")
    await redis.start()
    compute = await start_compute(root / "compute", free_port())
    env = {
        "O16N_COMPUTE_SECRET": SECRET,
        "O16N_HEALTH_INTERVAL": "0.5",
        "O16N_COMPUTE_TIMEOUT": "30",
        "O16N_AUTH_SYNC_INTERVAL": "1",
    }
    webs = []
    for i in range(2):
        webs.append(
            await start_web_node(
                root / f"web{i}",
                [compute.uri],
                database_url=postgres.dsn,
                redis_url=redis.url,
                redis_prefix=PREFIX,
                **env,
            )
        )
    balancer = LoadBalancer([w.url for w in webs])
    await balancer.start()
    yield Deps(postgres, redis, webs, balancer, compute.uri)
    await balancer.close()
    for web_node in webs:
        web_node.process.stop()
    compute.process.stop()
    if redis.process is not None:
        redis.process.stop()
    await postgres.remove()


async def _load(http: aiohttp.ClientSession, url: str, auth: dict[str, str], name: str, total: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    turn = itertools.count()

    async def worker() -> None:
        while (i := next(turn)) < total:
            status, body = await add(http, url, auth, name, i)
            statuses[status] += 1
            if status == 200:
                assert body["outputParameters"]["result"] == i + 1, body
            else:
                _json_error(body, status)

    await asyncio.gather(*(worker() for _ in range(6)))
    return statuses


def _json_error(body: Any, status: int) -> None:
    assert isinstance(body, dict) and body["code"] == status, body
    assert isinstance(body["message"], str) and body["message"] and "Traceback" not in str(body)


async def _component(http: aiohttp.ClientSession, node: WebNode, name: str) -> str:
    async with http.get(f"{node.url}/status", headers=await node.headers(http)) as resp:
        return str((await resp.json())["components"][name]["statusCode"])


async def test_redis_restart_during_load(deps: Deps, http: aiohttp.ClientSession) -> None:
    a, b = deps.webs
    auth = await a.headers(http)
    name = await publish(http, a.url, auth, ADD)
    load = asyncio.get_running_loop().create_task(_load(http, deps.balancer.url, auth, name, 400))

    deps.redis.kill()

    async def seen_down() -> bool:
        return await _component(http, a, "coordination") == "fail"

    await wait_until(seen_down, timeout=10, what="Redis reported down")
    # While Redis is down: the list can still be changed (the store is the truth), consumption goes on.
    assert await set_nodes(http, a, "PUT", ["http://127.0.0.1:1"]) == [deps.compute_uri, "http://127.0.0.1:1"]
    await deps.redis.start()

    async def seen_up() -> bool:
        return [await _component(http, w, "coordination") for w in deps.webs] == ["pass", "pass"]

    await wait_until(seen_up, timeout=15, what="both web nodes reconnected to Redis")
    statuses = await load
    print(f"\n400 consumptions while Redis was killed and restarted: {dict(statuses)}")
    assert set(statuses) <= {200, 503} and sum(statuses.values()) == 400

    # B caught up on the change it missed (a resync on reconnect), and notifications flow again.
    async def b_sees(uris: set[str]) -> bool:
        async with http.get(f"{b.url}/status", headers=await b.headers(http)) as resp:
            parts = (await resp.json())["components"]["backends"]["components"] or {}
        return set(parts) == uris

    await wait_until(lambda: b_sees({deps.compute_uri, "http://127.0.0.1:1"}), timeout=5, what="resync")
    assert await set_nodes(http, a, "DELETE", ["http://127.0.0.1:1"]) == [deps.compute_uri]
    started = asyncio.get_running_loop().time()
    await wait_until(lambda: b_sees({deps.compute_uri}), timeout=1.0, what="the change applied within a second")
    print(f"B applied a change made after the Redis restart in {asyncio.get_running_loop().time() - started:.2f} s")
    status, body = await add(http, b.url, auth, name, 1)
    assert status == 200, body


async def test_postgres_restart_during_load(deps: Deps, http: aiohttp.ClientSession) -> None:
    a, b = deps.webs
    auth = await a.headers(http)
    name = await publish(http, a.url, auth, ADD)
    for web_node in deps.webs:  # both web nodes know the service (their caches hold it)
        status, body = await add(http, web_node.url, auth, name, 0)
        assert status == 200, body
    load = asyncio.get_running_loop().create_task(_load(http, deps.balancer.url, auth, name, 400))

    await deps.postgres.stop("immediate")
    # What needs the database answers 503 JSON; consumption of a known service goes on from the cache.
    async with http.post(f"{a.url}/login", json={"username": "admin", "password": "Test-Passw0rd!"}) as resp:
        body = await resp.json()
        assert resp.status == 503, body
        _json_error(body, 503)
    async with http.post(f"{b.url}/services/{name}x/1.0", json=ADD, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 503, body
        _json_error(body, 503)
    async with http.get(f"{b.url}/status", headers=auth) as resp:
        body = await resp.json()
        if resp.status == 200:
            assert body["components"]["database"]["statusCode"] == "fail", body
        else:  # authenticating the caller may need the store too
            assert resp.status == 503, body
            _json_error(body, 503)
    await deps.postgres.start()

    async def logs_in() -> bool:
        for web_node in deps.webs:
            await login(http, web_node.url)
        return True

    await wait_until(logs_in, timeout=20, what="both web nodes reconnected to Postgres")
    statuses = await load
    print(f"\n400 consumptions while Postgres was stopped (immediate) and restarted: {dict(statuses)}")
    assert set(statuses) <= {200, 503} and sum(statuses.values()) == 400

    # Nothing lost: services published before are listed and served; publishing works again.
    async with http.get(f"{b.url}/services", headers=auth) as resp:
        names = {s["name"] for s in await resp.json()}
        assert resp.status == 200 and name in names
    again = await publish(http, b.url, auth, ADD)
    status, body = await add(http, a.url, auth, again, 2)
    assert status == 200 and body["outputParameters"]["result"] == 3, body


async def test_no_revocation_is_lost_while_redis_is_down(deps: Deps, http: aiohttp.ClientSession) -> None:
    a, b = deps.webs
    async with http.post(f"{a.url}/login", json={"username": "admin", "password": "Test-Passw0rd!"}) as resp:
        tokens = await resp.json()
    access = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with http.get(f"{b.url}/services", headers=access) as resp:
        assert resp.status == 200
    deps.redis.kill()
    async with http.delete(
        f"{a.url}/login/refreshToken", params={"refreshToken": tokens["refresh_token"]}, headers=access
    ) as resp:
        assert resp.status == 200, await resp.text()
    await deps.redis.start()

    async def rejected_on_b() -> bool:
        async with http.get(f"{b.url}/services", headers=access) as resp:
            return resp.status == 401

    await wait_until(rejected_on_b, timeout=10, what="B rejecting the revoked login")
