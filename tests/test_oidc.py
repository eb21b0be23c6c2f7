"""Bearer tokens of an external OIDC issuer, validated against a JWKS the test serves on 127.0.0.1.

The test plays the identity provider: it generates RSA and EC key pairs, publishes their
public halves as a JWKS (a URL, and a file for a second web node), and signs tokens with
groups/roles claims that map to Owner/Contributor/Reader.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support import ADMIN_PASSWORD, WebNode, admin_cli, free_port, start_web_node, unique

ISSUER = "https://idp.o16n.test/tenant"
AUDIENCE = "api://o16n"
ROLE_ENV = {
    "O16N_ROLE_OWNER_GROUPS": "o16n-owners",
    "O16N_ROLE_CONTRIBUTOR_GROUPS": "o16n-devs",
    "O16N_ROLE_READER_GROUPS": "o16n-readers",
}
SERVICE = {
    "code": "y = 1",
    "runtimeType": "Python",
    "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
}


class IdentityProvider:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_kid, self.ec_kid = "rsa-1", "ec-1"

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key, alg in ((self.rsa_kid, self.rsa, "RS256"), (self.ec_kid, self.ec, "ES256")):
            algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
            entry = json.loads(algorithm.to_jwk(key.public_key()))
            entry.update({"kid": kid, "use": "sig", "alg": alg})
            keys.append(entry)
        return {"keys": keys}

    def token(self, *, kid: str = "", key: Any = None, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": uuid.uuid4().hex, "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        signing_key = key if key is not None else (self.rsa if alg.startswith("RS") else self.ec)
        headers = {"kid": kid or (self.rsa_kid if alg.startswith("RS") else self.ec_kid)}
        return jwt.encode(body, signing_key, algorithm=alg, headers=headers)


@pytest.fixture(scope="module")
def idp() -> IdentityProvider:
    return IdentityProvider()


@pytest.fixture(scope="module")
async def jwks_url(idp: IdentityProvider) -> AsyncIterator[str]:
    async def jwks(_request: web.Request) -> web.Response:
        return web.json_response(idp.jwks())

    app = web.Application()
    app.router.add_get("/keys", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/keys"
    await runner.cleanup()


@pytest.fixture(scope="module")
async def node(jwks_url: str, compute_node: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebNode]:
    env = {"O16N_OIDC_ISSUER": ISSUER, "O16N_OIDC_AUDIENCE": AUDIENCE, "O16N_OIDC_JWKS_URL": jwks_url, **ROLE_ENV}
    web_node = await start_web_node(tmp_path_factory.mktemp("oidc"), [compute_node], **env)
    yield web_node
    web_node.process.stop()


async def _call(http: aiohttp.ClientSession, method: str, url: str, token: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_groups_and_roles_claims_map_to_roles(
    node: WebNode, idp: IdentityProvider, http: aiohttp.ClientSession
) -> None:
    dev = idp.token(preferred_username="dev@o16n.test", groups=["other", "o16n-devs"])
    status, body = await _call(http, "GET", f"{node.url}/services", dev)
    assert status == 200, body
    name = unique("oidc")
    status, body = await _call(http, "POST", f"{node.url}/services/{name}/1.0", dev, json=SERVICE)
    assert status == 201, body
    status, body = await _call(http, "GET", f"{node.url}/services/{name}/1.0", dev)
    service = body[0] if isinstance(body, list) else body
    assert status == 200 and service["myPermissionOnService"] == "read/write"
    assert service["owner"] == "dev@o16n.test"
    reader = idp.token(alg="ES256", preferred_username="reader@o16n.test", groups=["o16n-readers"])
    status, body = await _call(http, "GET", f"{node.url}/services/{name}/1.0", reader)
    service = body[0] if isinstance(body, list) else body
    assert status == 200 and service["myPermissionOnService"] == "read only"
    status, body = await _call(http, "POST", f"{node.url}/services/{unique('oidc')}/1.0", reader, json=SERVICE)
    assert status == 403 and body["code"] == 403
    owner = idp.token(roles=["o16n-owners"])  # an app-role claim, username from sub
    status, body = await _call(http, "GET", f"{node.url}/computenodes", owner)
    assert status == 200, body
    status, body = await _call(http, "GET", f"{node.url}/computenodes", dev)
    assert status == 403
    status, body = await _call(http, "GET", f"{node.url}/status", owner)
    auth = body["components"]["authentication"]["components"]
    assert auth["openIdConnect"]["details"] == {"authority": ISSUER, "audience": AUDIENCE}
    assert auth["local"]["details"]["enabled"] is False  # OIDC disables local logins
    # Reader is declared, so a user in no mapped group is denied.
    nobody = idp.token(groups=["somewhere-else"])
    status, body = await _call(http, "GET", f"{node.url}/services", nobody)
    assert status == 403 and "no role" in body["message"]


async def test_bad_external_tokens_are_401(node: WebNode, idp: IdentityProvider, http: aiohttp.ClientSession) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    good = idp.token(groups=["o16n-devs"])
    head, _, signature = good.split(".")
    forged = jwt.utils.base64url_encode(json.dumps({"iss": ISSUER, "groups": ["o16n-owners"]}).encode()).decode()
    bad = {
        "wrong audience": idp.token(aud="api://someone-else", groups=["o16n-devs"]),
        "expired": idp.token(iat=now - 7200, exp=now - 3600, groups=["o16n-devs"]),
        "wrong key, known kid": idp.token(key=stranger, groups=["o16n-devs"]),
        "unknown kid": idp.token(key=stranger, kid="rsa-unknown", groups=["o16n-devs"]),
        "wrong issuer": jwt.encode(
            {"iss": "https://evil", "aud": AUDIENCE, "sub": "x", "exp": now + 600}, idp.rsa, algorithm="RS256"
        ),
        "HS256": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 600, "groups": ["o16n-owners"]},
            "k" * 32,
            algorithm="HS256",
            headers={"kid": idp.rsa_kid},
        ),
        "tampered": f"{head}.{forged}.{signature}",
        "no exp": idp.token(exp=None, groups=["o16n-devs"]),
    }
    for what, token in bad.items():
        status, body = await _call(http, "GET", f"{node.url}/services", token)
        assert status == 401, (what, body)
        assert body["code"] == 401 and "Traceback" not in str(body)
    status, _ = await _call(http, "GET", f"{node.url}/services", good)
    assert status == 200
    code, out, _ = await admin_cli(node, "audit", "--action", "denied", "--limit", "20")
    assert code == 0 and "unauthenticated" in out


async def test_oidc_disables_local_login(node: WebNode, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{node.url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}) as resp:
        assert resp.status == 401


async def test_jwks_from_a_file(
    idp: IdentityProvider, compute_node: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(idp.jwks()))
    env = {
        "O16N_OIDC_ISSUER": ISSUER,
        "O16N_OIDC_AUDIENCE": AUDIENCE,
        "O16N_OIDC_JWKS_FILE": str(jwks_file),
        "O16N_LOCAL_LOGIN_WITH_EXTERNAL": "true",
    }
    web_node = await start_web_node(tmp_path, [compute_node], **env)
    try:
        token = idp.token(alg="ES256", preferred_username="anyone")
        status, body = await _call(http, "POST", f"{web_node.url}/services/{unique('file')}/1.0", token, json=SERVICE)
        assert status == 201, body  # no role groups configured: Contributor
        async with http.post(f"{web_node.url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}) as resp:
            assert resp.status == 200  # O16N_LOCAL_LOGIN_WITH_EXTERNAL keeps local logins
    finally:
        web_node.process.stop()
