"""Authentication and authorization against the real web node (SQLite one-box and Postgres + Redis).

Login, refresh rotation and theft detection, revocation, bad input, tampered tokens, roles,
the admin command line, the audit log and the correlation id. Users come from
`o16n admin user add` (tests.support.create_user).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import ADMIN_PASSWORD, WebNode, admin_cli, create_user, unique

PASSWORD = "Str0ng-Passw0rd!"
ADD = {
    "code": "result = x + y",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}


def assert_error(body: dict[str, object], status: int) -> None:
    assert body["code"] == status, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str) and isinstance(body["exceptionType"], str)
    assert "Traceback" not in json.dumps(body)


async def login(http: aiohttp.ClientSession, server: WebNode, username: str, password: str) -> dict[str, object]:
    async with http.post(f"{server.url}/login", json={"username": username, "password": password}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return dict(body)


def bearer(tokens: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def status_of(http: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> tuple[int, object]:
    async with http.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
        try:
            body = await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            body = await resp.text()
        return resp.status, body


async def test_login_bad_input_is_400_with_json(server: WebNode, http: aiohttp.ClientSession) -> None:
    cases: list[tuple[object, str]] = [
        ({"username": "admin"}, "password"),
        ({"password": "x"}, "username"),
        ({"username": 5, "password": "x"}, "username"),
        ({"username": "admin", "password": ["x"]}, "password"),
        ([1, 2], "JSON object"),
    ]
    for payload, named in cases:
        status, body = await status_of(http, "POST", f"{server.url}/login", json=payload)
        assert status == 400, (payload, body)
        assert isinstance(body, dict)
        assert_error(body, 400)
        assert named in str(body["message"])
    status, body = await status_of(http, "POST", f"{server.url}/login", data=b"{not json")
    assert status == 400 and isinstance(body, dict) and "malformed JSON" in str(body["message"])
    status, body = await status_of(http, "POST", f"{server.url}/login", data=b"")
    assert status == 400 and isinstance(body, dict)
    big = json.dumps({"username": "admin", "password": "x" * 100_000}).encode()
    status, body = await status_of(http, "POST", f"{server.url}/login", data=big)
    assert status == 413 and isinstance(body, dict)
    assert_error(body, 413)
    for payload in ({}, {"refreshToken": 3}):
        status, body = await status_of(http, "POST", f"{server.url}/login/refreshToken", json=payload)
        assert status == 400 and isinstance(body, dict) and "refreshToken" in str(body["message"])
    status, body = await status_of(http, "DELETE", f"{server.url}/login/refreshToken")
    assert status == 400 and isinstance(body, dict)
    assert_error(body, 400)


async def test_unknown_user_and_wrong_password_look_the_same(server: WebNode, http: aiohttp.ClientSession) -> None:
    name = unique("same")
    await create_user(server, name, PASSWORD, "Contributor")
    bodies = []
    for username, password in ((name, "Wrong-Passw0rd!"), (unique("ghost"), "Wrong-Passw0rd!")):
        status, body = await status_of(
            http, "POST", f"{server.url}/login", json={"username": username, "password": password}
        )
        assert status == 401
        assert isinstance(body, dict)
        assert_error(body, 401)
        bodies.append(body)
    assert bodies[0] == bodies[1]
    await login(http, server, name, PASSWORD)


async def test_refresh_rotates_and_old_pair_dies(server: WebNode, http: aiohttp.ClientSession) -> None:
    first = await login(http, server, "admin", ADMIN_PASSWORD)
    async with http.post(f"{server.url}/login/refreshToken", json={"refreshToken": first["refresh_token"]}) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert set(second) == {"token_type", "access_token", "expires_in", "expires_on", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    status, _ = await status_of(http, "GET", f"{server.url}/services", headers=bearer(second))
    assert status == 200
    # Presenting the rotated token again is theft: 401, and the whole chain ends.
    status, body = await status_of(
        http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": first["refresh_token"]}
    )
    assert status == 401 and isinstance(body, dict)
    assert_error(body, 401)
    garbage_status, garbage = await status_of(
        http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": "never-issued"}
    )
    assert garbage_status == 401 and garbage == body  # reuse is not told apart from garbage
    status, _ = await status_of(
        http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": second["refresh_token"]}
    )
    assert status == 401
    for tokens in (first, second):
        status, body = await status_of(http, "GET", f"{server.url}/services", headers=bearer(tokens))
        assert status == 401, body
    code, out, _ = await admin_cli(server, "audit", "--action", "refresh", "--limit", "5")
    assert code == 0 and "\ttheft\t" in out


async def test_garbage_refresh_token_is_401(server: WebNode, http: aiohttp.ClientSession) -> None:
    for token in ("garbage", "x" * 4000, "é"):
        status, body = await status_of(http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": token})
        assert status == 401 and isinstance(body, dict)
        assert_error(body, 401)
        status, body = await status_of(
            http, "DELETE", f"{server.url}/login/refreshToken", params={"refreshToken": token}
        )
        assert status == 401 and isinstance(body, dict)


async def test_revoke_ends_refresh_and_access_tokens(server: WebNode, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, server, "admin", ADMIN_PASSWORD)
    other = await login(http, server, "admin", ADMIN_PASSWORD)
    status, _ = await status_of(http, "GET", f"{server.url}/services", headers=bearer(tokens))
    assert status == 200
    status, body = await status_of(
        http, "DELETE", f"{server.url}/login/refreshToken", params={"refreshToken": str(tokens["refresh_token"])}
    )
    assert status == 200, body
    status, body = await status_of(http, "GET", f"{server.url}/services", headers=bearer(tokens))
    assert status == 401 and isinstance(body, dict)
    assert_error(body, 401)
    status, _ = await status_of(
        http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]}
    )
    assert status == 401
    status, _ = await status_of(
        http, "DELETE", f"{server.url}/login/refreshToken", params={"refreshToken": str(tokens["refresh_token"])}
    )
    assert status == 401
    # Another login of the same user is untouched.
    status, _ = await status_of(http, "GET", f"{server.url}/services", headers=bearer(other))
    assert status == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_bad_access_tokens_are_401(server: WebNode, http: aiohttp.ClientSession) -> None:
    real = str((await login(http, server, "admin", ADMIN_PASSWORD))["access_token"])
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    head, payload, signature = real.split(".")
    tampered_claims = {**claims, "role": "Owner", "sub": "mallory"}
    stranger = ec.generate_private_key(ec.SECP256R1())
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    bad = {
        "tampered payload": f"{head}.{_b64(json.dumps(tampered_claims).encode())}.{signature}",
        "truncated signature": f"{head}.{payload}.{signature[:-4]}",
        "alg none": f"{none_header}.{payload}.",
        "HS256 with a guessed secret": jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": header["kid"]}),
        "wrong key, right kid": jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": header["kid"]}),
        "unknown kid": jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "nope"}),
        "not a JWT": "abc",
    }
    for what, token in bad.items():
        status, body = await status_of(
            http, "GET", f"{server.url}/services", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 401, what
        assert isinstance(body, dict)
        assert_error(body, 401)
    for header_value in ("", "Bearer", "Basic abc", f"Token {real}"):
        status, body = await status_of(http, "GET", f"{server.url}/services", headers={"Authorization": header_value})
        assert status == 401 and isinstance(body, dict), header_value
    status, _ = await status_of(http, "GET", f"{server.url}/services", headers={"Authorization": f"Bearer {real}"})
    assert status == 200


async def test_roles_reader_contributor_owner(server: WebNode, http: aiohttp.ClientSession) -> None:
    reader, contributor, other = unique("reader"), unique("contrib"), unique("contrib")
    await create_user(server, reader, PASSWORD, "Reader")
    await create_user(server, contributor, PASSWORD, "Contributor")
    await create_user(server, other, PASSWORD)  # no role and none configured: Contributor
    r = bearer(await login(http, server, reader, PASSWORD))
    c = bearer(await login(http, server, contributor, PASSWORD))
    o = bearer(await login(http, server, other, PASSWORD))
    admin = bearer(await login(http, server, "admin", ADMIN_PASSWORD))
    name = unique("roles")
    status, body = await status_of(http, "POST", f"{server.url}/services/{name}/1.0", json=ADD, headers=r)
    assert status == 403 and isinstance(body, dict)
    assert_error(body, 403)
    status, body = await status_of(http, "POST", f"{server.url}/services/{name}/1.0", json=ADD, headers=c)
    assert status == 201, body
    status, _ = await status_of(http, "GET", f"{server.url}/services/{name}/1.0", headers=r)
    assert status == 200
    status, body = await status_of(http, "DELETE", f"{server.url}/services/{name}/1.0", headers=o)
    assert status == 403 and isinstance(body, dict)
    assert_error(body, 403)
    status, body = await status_of(http, "DELETE", f"{server.url}/services/{name}/1.0", headers=r)
    assert status == 403
    status, body = await status_of(http, "GET", f"{server.url}/computenodes", headers=c)
    assert status == 403, body
    status, body = await status_of(http, "GET", f"{server.url}/computenodes", headers=admin)
    assert status == 200, body
    same = {"entries": server.compute_uris}
    status, body = await status_of(http, "PUT", f"{server.url}/computenodes", json=same, headers=c)
    assert status == 403, body
    status, body = await status_of(http, "PUT", f"{server.url}/computenodes", json=same, headers=admin)
    assert status == 200, body
    code, out, _ = await admin_cli(server, "audit", "--action", "admin", "--limit", "5")
    assert code == 0 and "\tadmin\tadmin\tPUT /computenodes\tsuccess\t" in out
    status, body = await status_of(http, "DELETE", f"{server.url}/services/{name}/1.0", headers=admin)
    assert status == 200, body
    code, out, _ = await admin_cli(server, "audit", "--action", "denied", "--limit", "50")
    assert code == 0 and reader in out and "forbidden" in out


async def test_admin_cli_manages_users(server: WebNode, http: aiohttp.ClientSession) -> None:
    name = unique("cli")
    code, _, err = await admin_cli(server, "user", "add", name, "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 8" in err
    for weak, missing in (
        ("alllower1!", "upper"),
        ("ALLUPPER1!", "lower"),
        ("NoDigits!!", "digit"),
        ("NoSymb0ls", "symbol"),
    ):
        code, _, err = await admin_cli(server, "user", "add", name, "--password-stdin", stdin=weak + "\n")
        assert code == 1 and missing in err, (weak, err)
    long_password = "Aa1!" + "x" * 500  # no low upper limit on length
    await create_user(server, name, long_password, "Reader")
    code, _, err = await admin_cli(server, "user", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "exists" in err
    tokens = await login(http, server, name, long_password)
    code, out, _ = await admin_cli(server, "user", "list")
    assert code == 0 and f"{name}\tReader\tlocal" in out and "admin\tOwner\tlocal" in out
    code, _, _ = await admin_cli(server, "user", "set-role", name, "Contributor")
    assert code == 0
    # The new role applies from the next token refresh.
    async with http.post(f"{server.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]}) as resp:
        assert resp.status == 200
        tokens = await resp.json()
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["role"] == "Contributor"
    code, _, err = await admin_cli(server, "user", "set-role", unique("ghost"), "Reader")
    assert code == 1 and "no user" in err
    code, _, err = await admin_cli(server, "user", "set-role", "admin", "Reader")
    assert code == 1
    code, _, _ = await admin_cli(server, "user", "set-password", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0
    status, _ = await status_of(http, "POST", f"{server.url}/login", json={"username": name, "password": long_password})
    assert status == 401
    # A password change ends the user's logins (refresh tokens at once).
    status, _ = await status_of(
        http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]}
    )
    assert status == 401
    await login(http, server, name, PASSWORD)
    code, _, _ = await admin_cli(server, "user", "remove", name)
    assert code == 0
    status, _ = await status_of(http, "POST", f"{server.url}/login", json={"username": name, "password": PASSWORD})
    assert status == 401
    code, _, err = await admin_cli(server, "user", "remove", name)
    assert code == 1 and "no user" in err
    code, _, err = await admin_cli(server, "user", "remove", "admin")
    assert code == 1
    code, out, _ = await admin_cli(server, "audit", "--limit", "20")
    for action in ("user.add", "user.set-role", "user.set-password", "user.remove"):
        assert f"\t{action}\t{name}\tsuccess" in out, action


async def test_audit_and_correlation_id(server: WebNode, http: aiohttp.ClientSession) -> None:
    request_id = f"test-{uuid.uuid4().hex}"
    ghost = unique("ghost")
    async with http.post(
        f"{server.url}/login",
        json={"username": ghost, "password": "Wrong-Passw0rd!"},
        headers={"X-Request-Id": request_id},
    ) as resp:
        assert resp.status == 401
        assert resp.headers["X-Request-Id"] == request_id
    async with http.get(f"{server.url}/services") as resp:
        assert resp.status == 401
        generated = resp.headers["X-Request-Id"]
        assert len(generated) >= 16
    async with http.get(f"{server.url}/healthz", headers={"X-Request-Id": "bad id with spaces"}) as resp:
        assert resp.headers["X-Request-Id"] != "bad id with spaces"
    code, out, _ = await admin_cli(server, "audit", "--limit", "50")
    assert code == 0
    line = next(line for line in out.splitlines() if request_id in line)
    fields = line.split("\t")
    assert fields[1:5] == [ghost, "login", "-", "failure"]
    assert fields[5] == "127.0.0.1"
    denied = next(line for line in out.splitlines() if generated in line)
    assert "\tdenied\tGET /services\tunauthenticated\t" in denied
    log = server.process.log.read_text(errors="replace")
    assert request_id in log and '"CorrelationId"' in log


@pytest.mark.parametrize("secret", [ADMIN_PASSWORD, PASSWORD, "Wrong-Passw0rd!"])
async def test_logs_hold_no_passwords_or_tokens(server: WebNode, http: aiohttp.ClientSession, secret: str) -> None:
    tokens = await login(http, server, "admin", ADMIN_PASSWORD)
    await status_of(http, "POST", f"{server.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]})
    await status_of(http, "POST", f"{server.url}/login", json={"username": "admin", "password": "Wrong-Passw0rd!"})
    log = server.process.log.read_text(errors="replace")
    assert secret not in log
    assert str(tokens["access_token"]) not in log
    assert str(tokens["refresh_token"]) not in log
    assert str(tokens["access_token"]).split(".")[2] not in log


async def test_concurrent_successful_logins_are_never_throttled(server: WebNode, http: aiohttp.ClientSession) -> None:
    """Many application instances sharing one account log in at once: only failures count."""

    async def one() -> int:
        async with http.post(f"{server.url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}) as resp:
            return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(24)))
    assert statuses == [200] * 24
