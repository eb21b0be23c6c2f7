"""Start real o16n processes for tests and wait for them by polling (never by sleeping a fixed time)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "Test-Passw0rd!"
PG_ADMIN_DSN = os.environ.get("O16N_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("O16N_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A child process started by a test, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_group()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)
        self._kill_group()

    def _kill_group(self) -> None:
        # Shells are in their own process groups; kill any the node left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def spawn(name: str, module: str, env: Mapping[str, str], workdir: Path) -> Process:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("O16N_")}
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    handle = open(log, "wb")  # noqa: SIM115 (kept open by the child)
    popen = subprocess.Popen(
        [sys.executable, "-m", module],
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        start_new_session=True,
    )
    handle.close()
    return Process(name, popen, log)


async def wait_until(predicate: Any, *, timeout: float, what: str, process: Process | None = None) -> Any:
    """Poll `predicate` (async, returns truthy when ready) every 50 ms until `timeout`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.log_tail()}")
        try:
            result = await predicate()
            if result:
                return result
        except Exception as exc:  # not ready yet
            last = exc
        await asyncio.sleep(0.05)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{what} not ready after {timeout} s (last error: {last})\n{tail}")


async def grpc_serving(target: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def start_compute_node(
    workdir: Path, *, host: str = "127.0.0.1", port: int = 0, **env: str
) -> tuple[Process, str]:
    """A compute node listening on host:port (a free port when 0); returns it and its URI."""
    port = port or free_port(host)
    settings = {
        "O16N_COMPUTE_HOST": host,
        "O16N_COMPUTE_PORT": str(port),
        "O16N_DATA_DIR": str(workdir / "data"),
        "O16N_PYTHON_POOL_INITIAL_SIZE": "1",
        "O16N_PYTHON_POOL_MAX_SIZE": "4",
        "O16N_R_POOL_INITIAL_SIZE": "1",
        "O16N_R_POOL_MAX_SIZE": "2",
        **env,
    }
    process = spawn("computenode", "computenode", settings, workdir)
    target = f"{host}:{port}"
    await wait_until(lambda: grpc_serving(target), timeout=90, what="compute node", process=process)
    return process, f"http://{target}"


@dataclass
class WebNode:
    process: Process
    url: str
    mode: str
    compute_uris: list[str] = field(default_factory=list)
    _token: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # the O16N_ settings it was started with

    async def token(self, session: aiohttp.ClientSession) -> str:
        if self._token is None:
            self._token = await login(session, self.url)
        return self._token

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(session)}"}


async def login(
    session: aiohttp.ClientSession, url: str, username: str = "admin", password: str = ADMIN_PASSWORD
) -> str:
    async with session.post(f"{url}/login", json={"username": username, "password": password}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])


async def start_web_node(
    workdir: Path,
    compute_uris: list[str],
    *,
    database_url: str = "",
    redis_url: str = "",
    redis_prefix: str = "",
    **env: str,
) -> WebNode:
    port = free_port()
    settings = {
        "O16N_HOST": "127.0.0.1",
        "O16N_PORT": str(port),
        "O16N_DATA_DIR": str(workdir / "data"),
        "O16N_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "O16N_BCRYPT_ROUNDS": "4",
        "O16N_COMPUTE_NODES": ",".join(compute_uris),
        "O16N_HEALTH_INTERVAL": "0.5",
        "O16N_DATABASE_URL": database_url,
        "O16N_REDIS_URL": redis_url,
        "O16N_REDIS_PREFIX": redis_prefix or f"o16n-test-{uuid.uuid4().hex[:8]}:",
        **env,
    }
    process = spawn(f"webnode-{port}", "webnode", settings, workdir)
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/healthz") as resp:
            return resp.status == 200

    await wait_until(ready, timeout=60, what="web node", process=process)
    return WebNode(process, url, "cluster" if database_url else "onebox", list(compute_uris), env=settings)


async def admin_cli(server: WebNode, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run `o16n admin ARGS` against `server`'s store; returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("O16N_")}
    env.update(server.env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        "admin",
        *args,
        env=env,
        cwd=str(ROOT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    return int(process.returncode or 0), out.decode(), err.decode()


async def create_user(server: WebNode, username: str, password: str, role: str = "") -> None:
    """A local user in `server`'s store (`o16n admin user add`); role Owner, Contributor, Reader or "" (default)."""
    args = ["user", "add", username, "--password-stdin"] + (["--role", role] if role else [])
    code, out, err = await admin_cli(server, *args, stdin=password + "\n")
    assert code == 0, f"o16n admin user add {username} failed: {out}{err}"


async def create_database() -> str:
    """A fresh Postgres database for one test run; returns its DSN."""
    import asyncpg

    name = f"o16n_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(dsn: str) -> None:
    import asyncpg

    name = dsn.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def r_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import rpy2.rinterface as ri; ri.initr()"], capture_output=True, timeout=120
    )
    return probe.returncode == 0


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"
