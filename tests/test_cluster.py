"""Cluster mode with real processes on 127.0.0.1: 2 web nodes + 2 compute nodes + Postgres + Redis,
a small load balancer in front (a few lines of aiohttp, like nginx with `proxy_next_upstream error`).

The compute nodes require the shared secret, so every scenario also proves that web nodes
present it on every channel (services, sessions). Tests run in file order: the last one kills
a web node.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.pb import compute_pb2 as pb
from common.pb import compute_pb2_grpc as pb_grpc
from tests.support import (
    REDIS_URL,
    Process,
    WebNode,
    create_database,
    drop_database,
    free_port,
    grpc_serving,
    spawn,
    start_web_node,
    unique,
    wait_until,
)
from webnode.compute.channels import ChannelFactory
from webnode.compute.client import grpc_target

pytestmark = pytest.mark.cluster
SECRET = "cluster-test-secret"
ADD = {
    "code": "result = x + y",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}


# ---------------------------------------------------------------- the topology


@dataclass
class ComputeNodeProcess:
    workdir: Path
    port: int
    process: Process

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start_compute(workdir: Path, port: int, **env: str) -> ComputeNodeProcess:
    settings = {
        "O16N_COMPUTE_HOST": "127.0.0.1",
        "O16N_COMPUTE_PORT": str(port),
        "O16N_DATA_DIR": str(workdir / "data"),
        "O16N_PYTHON_POOL_INITIAL_SIZE": "2",
        "O16N_PYTHON_POOL_MAX_SIZE": "3",
        "O16N_R_ENABLED": "false",
        "O16N_COMPUTE_SECRET": SECRET,
        "O16N_NODE_ID": f"cn-{port}",
        **env,
    }
    process = spawn(f"computenode-{port}", "computenode", settings, workdir)
    await wait_until(lambda: grpc_serving(f"127.0.0.1:{port}"), timeout=90, what="compute node", process=process)
    return ComputeNodeProcess(workdir, port, process)


class LoadBalancer:
    """Round robin over web nodes; a web node that refuses connections is skipped (nginx's `error`)."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        for _ in range(len(self.backends)):
            backend = self.backends[next(self._turn) % len(self.backends)]
            try:
                async with self._session.request(
                    request.method, f"{backend}{request.rel_url}", headers=headers, data=body
                ) as resp:
                    payload = await resp.read()
                    kept = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "retry-after")}
                    return web.Response(status=resp.status, body=payload, headers=kept)
            except aiohttp.ClientConnectorError:
                continue  # not accepting connections: the request never reached it
        return web.json_response({"code": 502, "message": "no web node answered"}, status=502)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@dataclass
class Cluster:
    computes: list[ComputeNodeProcess]
    webs: list[WebNode]
    balancer: LoadBalancer
    dsn: str
    root: Path

    @property
    def a(self) -> WebNode:
        return self.webs[0]

    @property
    def b(self) -> WebNode:
        return self.webs[1]


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    dsn = await create_database()
    prefix = f"o16n-cluster-{uuid.uuid4().hex[:8]}:"
    computes = list(await asyncio.gather(*(start_compute(root / f"compute{i}", free_port()) for i in range(2))))
    uris = [c.uri for c in computes]
    env = {"O16N_COMPUTE_SECRET": SECRET, "O16N_HEALTH_INTERVAL": "0.5", "O16N_COMPUTE_TIMEOUT": "30"}
    # The first web node creates the schema and the admin; the second joins the same store.
    first = await start_web_node(root / "web0", uris, database_url=dsn, redis_url=REDIS_URL, redis_prefix=prefix, **env)
    second = await start_web_node(
        root / "web1", uris, database_url=dsn, redis_url=REDIS_URL, redis_prefix=prefix, **env
    )
    balancer = LoadBalancer([first.url, second.url])
    await balancer.start()
    yield Cluster(computes, [first, second], balancer, dsn, root)
    await balancer.close()
    for web_node in (first, second):
        web_node.process.stop()
    for compute in computes:
        compute.process.stop()
    await drop_database(dsn)


# ---------------------------------------------------------------- helpers


async def node_status(uri: str, secret: str = SECRET) -> pb.NodeStatus:
    async with ChannelFactory(secret=secret).open(grpc_target(uri)) as channel:
        stub = pb_grpc.ComputeStub(channel)  # type: ignore[no-untyped-call]
        status: pb.NodeStatus = await stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        return status


WHO = {
    "code": "import os\nnode = os.getppid()",  # a shell's parent is its compute node
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "node", "type": "numeric"}],
}


async def served_by(http: aiohttp.ClientSession, url: str, auth: dict[str, str], name: str) -> int:
    """The pid of the compute node that ran one request of the WHO service."""
    async with http.post(f"{url}/api/{name}/1.0", json={"x": 0}, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return int(body["outputParameters"]["node"])


async def backends(http: aiohttp.ClientSession, node: WebNode) -> dict[str, str]:
    """The compute nodes a web node routes to: "up" or "fail" as its /status reports them."""
    async with http.get(f"{node.url}/status", headers=await node.headers(http)) as resp:
        body = await resp.json()
    parts = body["components"]["backends"]["components"] or {}
    # "warn" only says R is disabled on these nodes: they serve Python.
    return {uri: "up" if part["statusCode"] in ("pass", "warn") else part["statusCode"] for uri, part in parts.items()}


async def publish(http: aiohttp.ClientSession, url: str, auth: dict[str, str], definition: dict[str, Any]) -> str:
    name = unique("svc")
    async with http.post(f"{url}/services/{name}/1.0", json=definition, headers=auth) as resp:
        assert resp.status == 201, await resp.text()
    return name


async def add(http: aiohttp.ClientSession, url: str, auth: dict[str, str], name: str, x: int) -> tuple[int, Any]:
    async with http.post(f"{url}/api/{name}/1.0", json={"x": x, "y": 1}, headers=auth) as resp:
        return resp.status, await resp.json(content_type=None)


async def set_nodes(http: aiohttp.ClientSession, node: WebNode, method: str, entries: list[str]) -> list[str]:
    async with http.request(
        method, f"{node.url}/computenodes", json={"entries": entries}, headers=await node.headers(http)
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return list(body["computeNodes"])


def assert_json_error(body: Any, status: int) -> None:
    assert isinstance(body, dict) and body["code"] == status, body
    assert isinstance(body["message"], str) and body["message"] and "Traceback" not in str(body)


# ---------------------------------------------------------------- scenarios


async def test_publish_on_one_web_node_consume_on_the_other(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    auth = await cluster.a.headers(http)
    name = await publish(http, cluster.a.url, auth, ADD)
    # B and the balancer serve it with A's token: keys and services live in the shared store.
    for url in (cluster.b.url, cluster.balancer.url, cluster.a.url):
        status, body = await add(http, url, auth, name, 41)
        assert status == 200 and body["outputParameters"]["result"] == 42, body
    async with http.get(f"{cluster.b.url}/services/{name}", headers=auth) as resp:
        assert resp.status == 200 and (await resp.json())[0]["name"] == name


async def test_session_created_through_one_web_node_used_through_the_other(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    auth = await cluster.a.headers(http)
    async with http.post(f"{cluster.a.url}/sessions", json={"runtimeType": "Python"}, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 201, body
    sid = body["sessionId"]
    for url, code in (
        (cluster.a.url, "counter = 1"),
        (cluster.b.url, "counter += 1"),
        (cluster.balancer.url, "counter += 1"),
    ):
        async with http.post(f"{url}/sessions/{sid}/execute", json={"code": code}, headers=auth) as resp:
            result = await resp.json()
            assert resp.status == 200 and result["success"], result
    async with http.post(
        f"{cluster.b.url}/sessions/{sid}/execute", json={"code": "print(counter)"}, headers=auth
    ) as resp:
        assert (await resp.json())["consoleOutput"].strip() == "3"
    async with http.delete(f"{cluster.b.url}/sessions/{sid}", headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    async with http.post(f"{cluster.a.url}/sessions/{sid}/execute", json={"code": "1"}, headers=auth) as resp:
        assert resp.status == 404, await resp.text()


async def test_compute_node_list_change_applies_on_every_web_node_within_a_second(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    auth = await cluster.a.headers(http)
    one, two = (c.uri for c in cluster.computes)
    pid_one = cluster.computes[0].process.popen.pid
    started = time.monotonic()
    assert await set_nodes(http, cluster.a, "POST", [one]) == [one]

    async def b_applied() -> bool:
        return set(await backends(http, cluster.b)) == {one}

    await wait_until(b_applied, timeout=5, what="web node B applying the new list")
    applied = time.monotonic() - started
    print(f"\nweb node B applied the /computenodes change {applied * 1000:.0f} ms after A's POST")
    assert applied < 1.0
    # B routes accordingly: a service published now only ever reaches the one node.
    name = await publish(http, cluster.b.url, auth, WHO)
    assert {await served_by(http, cluster.b.url, auth, name) for _ in range(10)} == {pid_one}

    # PUT on B adds the node back; A applies it and both nodes serve again.
    started = time.monotonic()
    assert await set_nodes(http, cluster.b, "PUT", [two]) == [one, two]

    async def a_applied() -> bool:
        return set(await backends(http, cluster.a)) == {one, two}

    await wait_until(a_applied, timeout=5, what="web node A applying the new list")
    assert time.monotonic() - started < 1.0

    async def both_pass() -> bool:
        return [set((await backends(http, w)).values()) for w in cluster.webs] == [{"up"}] * 2

    await wait_until(both_pass, timeout=10, what="both nodes healthy on both web nodes")


async def test_compute_nodes_accept_calls_only_with_the_secret(
    cluster: Cluster, http: aiohttp.ClientSession, processes: list[Process]
) -> None:
    uri = cluster.computes[0].uri
    for secret in ("", "wrong"):
        with pytest.raises(grpc.RpcError) as caught:
            await node_status(uri, secret)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The Call stream too, not only unary methods.
    async with grpc.aio.insecure_channel(grpc_target(uri)) as channel:
        # Opening the stream sends the metadata; the node ends it before any request is read.
        # (No write here: a write racing the node's rejection fails locally, and grpc.aio then
        # records that local INTERNAL as the call's status in place of the node's.)
        call = pb_grpc.ComputeStub(channel).Call()  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as rejected:
            await call.read()
        assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
        # Health checks stay open (probes).
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert (await node_status(uri)).node_id

    # A web node configured with the wrong secret: 503 JSON saying why, and /status fails the nodes.
    rogue = await start_web_node(
        cluster.root / "rogue", [c.uri for c in cluster.computes], database_url=cluster.dsn, O16N_COMPUTE_SECRET="nope"
    )
    processes.append(rogue.process)
    auth = await rogue.headers(http)
    name = await publish(http, rogue.url, auth, ADD)
    status, body = await add(http, rogue.url, auth, name, 1)
    assert status == 503 and "secret" in body["message"], body
    assert_json_error(body, 503)
    assert set((await backends(http, rogue)).values()) == {"fail"}


async def test_sigkill_a_compute_node_under_load(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    auth = await cluster.a.headers(http)
    one, two = cluster.computes
    name = await publish(http, cluster.a.url, auth, ADD)

    # A session placed on the node about to die: only `two` is in the list while it is created.
    await set_nodes(http, cluster.a, "POST", [two.uri])
    await wait_until(lambda: _routes_to(http, cluster, {two.uri}), timeout=5, what="list applied")
    async with http.post(f"{cluster.a.url}/sessions", json={"runtimeType": "Python"}, headers=auth) as resp:
        doomed = (await resp.json())["sessionId"]
        assert resp.status == 201
    await set_nodes(http, cluster.a, "POST", [one.uri, two.uri])
    await wait_until(lambda: _routes_to(http, cluster, {one.uri, two.uri}), timeout=5, what="list applied")

    total, concurrency, kill_after = 1000, 16, 200
    statuses: Counter[int] = Counter()
    errors: list[Any] = []
    done = 0
    killed_at: float | None = None
    last_error_at = 0.0
    turn = itertools.count()
    detection: list[asyncio.Task[float]] = []

    async def detect() -> float:
        """Milliseconds from the kill until both web nodes' /status report the dead node as failed."""
        assert killed_at is not None
        expected = {one.uri: "up", two.uri: "fail"}

        async def reported() -> bool:
            return [await backends(http, w) for w in cluster.webs] == [expected] * 2

        await wait_until(reported, timeout=10, what="the dead node reported")
        return (time.monotonic() - killed_at) * 1000

    async def worker() -> None:
        nonlocal done, killed_at, last_error_at
        while (i := next(turn)) < total:
            status, body = await add(http, cluster.balancer.url, auth, name, i)
            statuses[status] += 1
            if status == 200:
                assert body["outputParameters"]["result"] == i + 1, body
            else:
                errors.append(body)
                last_error_at = time.monotonic()
            done += 1
            if done == kill_after and killed_at is None:
                two.process.kill()
                killed_at = time.monotonic()
                detection.append(asyncio.get_running_loop().create_task(detect()))

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    assert killed_at is not None
    print(
        f"\n{total} consumptions through the balancer, SIGKILL of one compute node after {kill_after}: "
        f"{dict(statuses)} in {elapsed:.1f} s; "
        f"last error {max(0.0, last_error_at - killed_at) * 1000:.0f} ms after the kill"
    )
    assert sum(statuses.values()) == total
    assert set(statuses) <= {200, 503}, statuses  # never a 500, never a hang
    assert statuses[503] <= concurrency  # only requests in flight on the dead node fail
    for body in errors:
        assert_json_error(body, 503)

    # Detection: both web nodes report the dead node as failed (warn overall), the other as up.
    detected_ms = await asyncio.wait_for(detection[0], 10)
    print(f"both web nodes' /status report the dead node {detected_ms:.0f} ms after the kill")
    # Nothing lost: the service is listed and served; the dead node's session answers 410 (Gone).
    async with http.get(f"{cluster.b.url}/services/{name}", headers=auth) as resp:
        assert resp.status == 200
    async with http.post(f"{cluster.b.url}/sessions/{doomed}/execute", json={"code": "1"}, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 410, body
        assert_json_error(body, 410)

    # The node comes back on the same address: it is used again.
    revived = await start_compute(two.workdir, two.port)
    cluster.computes[1] = revived

    async def back() -> bool:
        return [set((await backends(http, w)).values()) for w in cluster.webs] == [{"up"}] * 2

    await wait_until(back, timeout=15, what="the revived node healthy again")
    who = await publish(http, cluster.a.url, auth, WHO)
    seen: set[int] = set()
    revived_at = time.monotonic()

    async def used_again() -> bool:
        seen.add(await served_by(http, cluster.a.url, auth, who))
        return revived.process.popen.pid in seen

    await wait_until(used_again, timeout=30, what="the revived node used again")
    print(f"the revived node served a request {(time.monotonic() - revived_at) * 1000:.0f} ms after it was healthy")
    assert seen <= {one.process.popen.pid, revived.process.popen.pid}


async def _routes_to(http: aiohttp.ClientSession, cluster: Cluster, uris: set[str]) -> bool:
    return [set(await backends(http, w)) for w in cluster.webs] == [uris] * 2


async def test_web_node_killed_the_other_keeps_serving(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    auth = await cluster.a.headers(http)  # a token issued by A
    name = await publish(http, cluster.a.url, auth, ADD)
    async with http.post(f"{cluster.a.url}/sessions", json={"runtimeType": "Python"}, headers=auth) as resp:
        sid = (await resp.json())["sessionId"]
    async with http.post(f"{cluster.a.url}/sessions/{sid}/execute", json={"code": "kept = 7"}, headers=auth) as resp:
        assert resp.status == 200
    cluster.a.process.kill()
    for x in range(20):  # the balancer skips the dead web node; B accepts A's token
        status, body = await add(http, cluster.balancer.url, auth, name, x)
        assert status == 200 and body["outputParameters"]["result"] == x + 1, body
    async with http.post(
        f"{cluster.balancer.url}/sessions/{sid}/execute", json={"code": "print(kept)"}, headers=auth
    ) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["consoleOutput"].strip() == "7", body
