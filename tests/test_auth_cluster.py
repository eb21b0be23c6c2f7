"""Two web nodes sharing Postgres + Redis: tokens, revocations, key rotation and login throttling
are shared; and a one-box node with a signing key file and a realistic bcrypt work factor, for
the unknown-user-vs-wrong-password timing.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import ADMIN_PASSWORD, REDIS_URL, WebNode, admin_cli, create_user, start_web_node, unique, wait_until

PASSWORD = "Cluster-Passw0rd!"
THROTTLE = {"O16N_LOGIN_MAX_FAILURES_PER_USER": "3", "O16N_LOGIN_MAX_FAILURES_PER_ADDRESS": "8"}


@pytest.fixture(scope="module")
async def pair(
    compute_node: str, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[WebNode, WebNode]]:
    prefix = f"o16n-auth-{uuid.uuid4().hex[:8]}:"
    nodes = []
    for name in ("a", "b"):
        nodes.append(
            await start_web_node(
                tmp_path_factory.mktemp(f"auth-{name}"),
                [compute_node],
                database_url=pg_dsn,
                redis_url=REDIS_URL,
                redis_prefix=prefix,
                O16N_AUTH_SYNC_INTERVAL="60",  # so the tests see Redis deliver, not the periodic re-read
                **THROTTLE,
            )
        )
    yield nodes[0], nodes[1]
    for node in nodes:
        node.process.stop()


async def _login(http: aiohttp.ClientSession, node: WebNode, username: str, password: str) -> aiohttp.ClientResponse:
    async with http.post(f"{node.url}/login", json={"username": username, "password": password}) as resp:
        await resp.read()
        return resp


async def _tokens(http: aiohttp.ClientSession, node: WebNode, username: str, password: str) -> dict[str, str]:
    async with http.post(f"{node.url}/login", json={"username": username, "password": password}) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def _status(http: aiohttp.ClientSession, node: WebNode, token: str) -> int:
    async with http.get(f"{node.url}/services", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_tokens_and_revocations_cross_nodes(pair: tuple[WebNode, WebNode], http: aiohttp.ClientSession) -> None:
    a, b = pair
    tokens = await _tokens(http, a, "admin", ADMIN_PASSWORD)
    assert await _status(http, b, tokens["access_token"]) == 200
    async with http.post(f"{b.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]}) as resp:
        assert resp.status == 200
        renewed = await resp.json()
    assert await _status(http, a, renewed["access_token"]) == 200
    assert await _status(http, b, renewed["access_token"]) == 200  # cached on b from now on
    async with http.delete(f"{a.url}/login/refreshToken", params={"refreshToken": renewed["refresh_token"]}) as resp:
        assert resp.status == 200

    async def rejected_on_b() -> bool:
        return await _status(http, b, renewed["access_token"]) == 401

    await wait_until(rejected_on_b, timeout=10, what="the revocation to reach web node b")
    # Theft detection on one node ends the chain's access tokens on the other.
    stolen = await _tokens(http, b, "admin", ADMIN_PASSWORD)
    assert await _status(http, a, stolen["access_token"]) == 200
    async with http.post(f"{a.url}/login/refreshToken", json={"refreshToken": stolen["refresh_token"]}) as resp:
        assert resp.status == 200
    async with http.post(f"{b.url}/login/refreshToken", json={"refreshToken": stolen["refresh_token"]}) as resp:
        assert resp.status == 401

    async def rejected_on_a() -> bool:
        return await _status(http, a, stolen["access_token"]) == 401

    await wait_until(rejected_on_a, timeout=10, what="the theft revocation to reach web node a")


async def test_key_rotation_from_the_command_line(pair: tuple[WebNode, WebNode], http: aiohttp.ClientSession) -> None:
    a, b = pair
    before = await _tokens(http, a, "admin", ADMIN_PASSWORD)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    code, out, err = await admin_cli(a, "key", "rotate")
    assert code == 0, err
    new_kid = out.split()[3]

    async def signing_with_new_key(node: WebNode) -> bool:
        tokens = await _tokens(http, node, "admin", ADMIN_PASSWORD)
        return bool(jwt.get_unverified_header(tokens["access_token"])["kid"] == new_kid)

    for node in (a, b):
        await wait_until(lambda node=node: signing_with_new_key(node), timeout=10, what="signing with the new key")
    assert new_kid != old_kid
    for node in (a, b):
        assert await _status(http, node, before["access_token"]) == 200  # old key still verifies


async def test_user_removal_ends_access_on_every_node(
    pair: tuple[WebNode, WebNode], http: aiohttp.ClientSession
) -> None:
    a, b = pair
    name = unique("leaver")
    await create_user(a, name, PASSWORD, "Contributor")
    tokens = await _tokens(http, b, name, PASSWORD)
    assert await _status(http, a, tokens["access_token"]) == 200
    code, _, err = await admin_cli(a, "user", "remove", name)
    assert code == 0, err
    for node in (a, b):

        async def rejected(node: WebNode = node) -> bool:
            return await _status(http, node, tokens["access_token"]) == 401

        await wait_until(rejected, timeout=10, what="the removal to end the user's access token")


async def test_throttling_is_shared_and_success_resets(
    pair: tuple[WebNode, WebNode], http: aiohttp.ClientSession
) -> None:
    a, b = pair
    name = unique("throttled")
    await create_user(a, name, PASSWORD, "Reader")
    for node in (a, b, a):  # 3 failures, counted across nodes
        assert (await _login(http, node, name, "Wrong-Passw0rd!")).status == 401
    async with http.post(f"{b.url}/login", json={"username": name, "password": PASSWORD}) as resp:
        body = await resp.json()
        assert resp.status == 429, body
        assert body["code"] == 429 and "too many" in body["message"]
        assert 0 < int(resp.headers["Retry-After"]) <= 900
    code, out, _ = await admin_cli(a, "audit", "--action", "login", "--limit", "10")
    assert code == 0
    assert f"\t{name}\tlogin\t-\tthrottled\t" in out
    # Another user is not blocked by this user's counter; a success resets the address counter.
    other = unique("fine")
    await create_user(a, other, PASSWORD, "Reader")
    assert (await _login(http, a, other, PASSWORD)).status == 200
    # Per address: many user names failing from one address.
    statuses = [(await _login(http, a if i % 2 else b, unique("ghost"), "Wrong-Passw0rd!")).status for i in range(9)]
    assert statuses[:8] == [401] * 8 and statuses[8] == 429
    assert (await _login(http, a, other, PASSWORD)).status == 429  # the address is blocked for everyone


@pytest.fixture(scope="module")
async def keyfile_node(compute_node: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebNode]:
    workdir = tmp_path_factory.mktemp("keyfile")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (workdir / "signing.pem").write_bytes(pem)
    node = await start_web_node(
        workdir,
        [compute_node],
        O16N_SIGNING_KEY_FILE=str(workdir / "signing.pem"),
        O16N_BCRYPT_ROUNDS="10",
        O16N_LOGIN_MAX_FAILURES_PER_USER="1000",
        O16N_LOGIN_MAX_FAILURES_PER_ADDRESS="1000",
    )
    yield node
    node.process.stop()


def _public_pem(node: WebNode) -> bytes:
    pem = Path(node.env["O16N_SIGNING_KEY_FILE"]).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_signing_key_file(keyfile_node: WebNode, http: aiohttp.ClientSession) -> None:
    tokens = await _tokens(http, keyfile_node, "admin", ADMIN_PASSWORD)
    claims = jwt.decode(
        tokens["access_token"], _public_pem(keyfile_node), algorithms=["ES256"], audience="o16n", issuer="o16n"
    )
    assert claims["sub"] == "admin" and claims["role"] == "Owner"
    assert {"iss", "aud", "sub", "exp", "iat", "jti"} <= set(claims)
    assert jwt.get_unverified_header(tokens["access_token"])["kid"].startswith("file-")


async def test_unknown_user_costs_the_same_as_wrong_password(
    keyfile_node: WebNode, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    name = unique("timed")
    await create_user(keyfile_node, name, PASSWORD, "Reader")

    async def timed(username: str) -> float:
        started = time.perf_counter()
        response = await _login(http, keyfile_node, username, "Wrong-Passw0rd!")
        assert response.status == 401
        return time.perf_counter() - started

    wrong, unknown = [], []
    for _ in range(9):  # interleaved, so machine load affects both alike
        wrong.append(await timed(name))
        unknown.append(await timed(unique("nobody")))
    wrong_ms, unknown_ms = statistics.median(wrong) * 1000, statistics.median(unknown) * 1000
    (tmp_path / "timing.txt").write_text(f"wrong password {wrong_ms:.1f} ms, unknown user {unknown_ms:.1f} ms\n")
    print(f"median 401 time: wrong password {wrong_ms:.1f} ms, unknown user {unknown_ms:.1f} ms (bcrypt 10)")
    assert wrong_ms > 10 and unknown_ms > 10  # both paid for a bcrypt check
    assert abs(wrong_ms - unknown_ms) < 0.35 * max(wrong_ms, unknown_ms)
