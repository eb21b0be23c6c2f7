"""The secure channel: `o16n admin certs`, mutual TLS between web and compute nodes, HTTPS web nodes."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.pb import compute_pb2 as pb
from common.pb import compute_pb2_grpc as pb_grpc
from tests.support import ADMIN_PASSWORD, ROOT, Process, free_port, spawn, wait_until
from tests.test_cluster import ADD, publish

HOST = "127.0.0.1"


def make_certs(directory: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "common.cli", "admin", "certs", "--out", str(directory), "--host", HOST],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    written = {Path(line).name for line in result.stdout.split()}
    stems = ("ca", "computenode", "webnode-client", "webnode")
    assert written == {f"{stem}{suffix}.pem" for stem in stems for suffix in ("", "-key")}
    return directory


def _credentials(certs: Path, client: bool = True) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "webnode-client-key.pem").read_bytes() if client else None,
        certificate_chain=(certs / "webnode-client.pem").read_bytes() if client else None,
    )


async def _tls_serving(target: str, certs: Path) -> bool:
    async with grpc.aio.secure_channel(target, _credentials(certs)) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _https_web_node(workdir: Path, compute_uri: str, certs: Path, *, client_cert: bool) -> tuple[Process, str]:
    port = free_port()
    env = {
        "O16N_HOST": HOST,
        "O16N_PORT": str(port),
        "O16N_DATA_DIR": str(workdir / "data"),
        "O16N_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "O16N_BCRYPT_ROUNDS": "4",
        "O16N_COMPUTE_NODES": compute_uri,
        "O16N_HEALTH_INTERVAL": "0.5",
        "O16N_TLS_CERT": str(certs / "webnode.pem"),
        "O16N_TLS_KEY": str(certs / "webnode-key.pem"),
        "O16N_COMPUTE_TLS_CA": str(certs / "ca.pem"),
    }
    if client_cert:
        env["O16N_COMPUTE_TLS_CLIENT_CERT"] = str(certs / "webnode-client.pem")
        env["O16N_COMPUTE_TLS_CLIENT_KEY"] = str(certs / "webnode-client-key.pem")
    process = spawn(f"webnode-{port}", "webnode", env, workdir)
    url = f"https://{HOST}:{port}"
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))

    async def ready() -> bool:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/healthz", ssl=context) as resp:
            return resp.status == 200

    await wait_until(ready, timeout=60, what="HTTPS web node", process=process)
    return process, url


async def test_mutual_tls_and_https(tmp_path: Path, processes: list[Process]) -> None:
    certs = make_certs(tmp_path / "certs")
    port = free_port()
    compute = spawn(
        "computenode-tls",
        "computenode",
        {
            "O16N_COMPUTE_HOST": HOST,
            "O16N_COMPUTE_PORT": str(port),
            "O16N_DATA_DIR": str(tmp_path / "compute"),
            "O16N_PYTHON_POOL_INITIAL_SIZE": "1",
            "O16N_PYTHON_POOL_MAX_SIZE": "2",
            "O16N_R_ENABLED": "false",
            "O16N_COMPUTE_TLS_CERT": str(certs / "computenode.pem"),
            "O16N_COMPUTE_TLS_KEY": str(certs / "computenode-key.pem"),
            "O16N_COMPUTE_TLS_CLIENT_CA": str(certs / "ca.pem"),
        },
        tmp_path / "compute",
    )
    processes.append(compute)
    target = f"{HOST}:{port}"
    await wait_until(lambda: _tls_serving(target, certs), timeout=90, what="TLS compute node", process=compute)

    # Without a client certificate, or in plain text, the compute node accepts nothing.
    for channel in (
        grpc.aio.secure_channel(target, _credentials(certs, client=False)),
        grpc.aio.insecure_channel(target),
    ):
        async with channel:
            try:
                await pb_grpc.ComputeStub(channel).GetStatus(pb.GetStatusRequest(), timeout=3)  # type: ignore[no-untyped-call]
                raise AssertionError("the compute node answered a caller without a client certificate")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc

    web, url = await _https_web_node(tmp_path / "web", f"http://{target}", certs, client_cert=True)
    processes.append(web)
    bare, bare_url = await _https_web_node(tmp_path / "bare", f"http://{target}", certs, client_cert=False)
    processes.append(bare)
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.post(f"{url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}) as resp:
            assert resp.status == 200
            auth = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        name = await publish(http, url, auth, ADD)
        async with http.post(f"{url}/api/{name}/1.0", json={"x": 1, "y": 2}, headers=auth) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["outputParameters"]["result"] == 3, body

        # A web node without the client certificate cannot use the compute node: 503 JSON, /status fails.
        async with http.post(f"{bare_url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}) as resp:
            bare_auth = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        bare_name = await publish(http, bare_url, bare_auth, ADD)
        async with http.post(f"{bare_url}/api/{bare_name}/1.0", json={"x": 1, "y": 2}, headers=bare_auth) as resp:
            body = await resp.json()
            assert resp.status == 503 and body["code"] == 503 and "Traceback" not in str(body), body
        async with http.get(f"{bare_url}/status", headers=bare_auth) as resp:
            assert (await resp.json())["components"]["backends"]["statusCode"] == "fail"

    # Plain HTTP to the HTTPS port is refused (no silent downgrade).
    async with aiohttp.ClientSession() as plain:
        try:
            async with plain.get(f"http://{HOST}:{url.rsplit(':', 1)[1]}/healthz") as resp:
                assert resp.status == 400
        except aiohttp.ClientError:
            pass
