"""End to end through real processes: login, publish `add`, consume it, status, error shapes."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support import WebNode, start_compute_node, start_web_node, unique, wait_until

ADD = {
    "code": "result = x + y",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}


def assert_error(body: dict[str, object], status: int) -> None:
    """The one JSON error shape."""
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str)
    assert isinstance(body["exceptionType"], str)
    assert "Traceback" not in str(body)


async def test_login_publish_consume_add(server: WebNode, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{server.url}/login", json={"username": "admin", "password": "Test-Passw0rd!"}) as resp:
        assert resp.status == 200
        tokens = await resp.json()
    assert set(tokens) == {"token_type", "access_token", "expires_in", "expires_on", "refresh_token"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    name = unique("add")
    async with http.post(f"{server.url}/services/{name}/1.0", json=ADD, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(f"{server.url}/api/{name}/1.0", json={"x": 1, "y": 2}, headers=headers) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert result == {
        "success": True,
        "errorMessage": "",
        "outputParameters": {"result": 3},
        "outputFiles": {},
        "consoleOutput": "",
        "changedFiles": [],
    }
    async with http.get(f"{server.url}/services", headers=headers) as resp:
        names = [s["name"] for s in await resp.json()]
    assert name in names


async def test_status_reports_real_components(server: WebNode, http: aiohttp.ClientSession) -> None:
    headers = await server.headers(http)

    async def passing() -> dict[str, object] | None:
        async with http.get(f"{server.url}/status", headers=headers) as resp:
            body = await resp.json()
        return body if body["components"]["backends"]["statusCode"] == "pass" else None

    body = await wait_until(passing, timeout=30, what="a passing /status")
    assert body["statusCode"] == "pass"
    database = body["components"]["database"]
    assert database["statusCode"] == "pass"
    assert database["details"]["type"] == ("postgresql" if server.mode == "cluster" else "sqlite")
    coordination = body["components"]["coordination"]["details"]["type"]
    assert coordination == ("redis" if server.mode == "cluster" else "in-process")
    auth = body["components"]["authentication"]
    assert auth["components"]["local"]["details"] == {"enabled": True, "signing": "ES256"}
    assert set(auth["components"]) == {"local"}  # neither LDAP nor OIDC configured here
    (node,) = body["components"]["backends"]["components"].values()
    assert node["details"]["pythonMaxPoolSize"] == 4
    assert node["details"]["pythonCanOpenShell"] == "True"


async def test_unauthenticated_requests_get_401(server: WebNode, http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
        async with http.get(f"{server.url}/services", headers=headers) as resp:
            assert resp.status == 401
            assert_error(await resp.json(), 401)


async def test_wrong_password_gets_401(server: WebNode, http: aiohttp.ClientSession) -> None:
    for user, password in (("admin", "wrong"), ("nobody", "Test-Passw0rd!")):
        async with http.post(f"{server.url}/login", json={"username": user, "password": password}) as resp:
            assert resp.status == 401
            assert_error(await resp.json(), 401)


async def test_unknown_route_gets_404_json(server: WebNode, http: aiohttp.ClientSession) -> None:
    headers = await server.headers(http)
    async with http.get(f"{server.url}/no/such/route", headers=headers) as resp:
        assert resp.status == 404
        assert_error(await resp.json(), 404)
    async with http.get(f"{server.url}/services/nothing-here/1.0", headers=headers) as resp:
        assert resp.status == 404
        assert_error(await resp.json(), 404)
    async with http.post(f"{server.url}/api/nothing-here/1.0", json={}, headers=headers) as resp:
        assert resp.status == 404
        assert_error(await resp.json(), 404)


async def test_malformed_json_gets_400_saying_what(server: WebNode, http: aiohttp.ClientSession) -> None:
    headers = {**(await server.headers(http)), "Content-Type": "application/json"}
    async with http.post(f"{server.url}/login", data=b'{"username": "admin",') as resp:
        assert resp.status == 400
        body = await resp.json()
    assert_error(body, 400)
    assert "malformed JSON" in body["message"]
    async with http.post(f"{server.url}/services/{unique('bad')}/1.0", data=b"[1, 2", headers=headers) as resp:
        assert resp.status == 400
        assert "malformed JSON" in (await resp.json())["message"]
    async with http.post(f"{server.url}/login", json=["not", "an", "object"]) as resp:
        assert resp.status == 400
        assert_error(await resp.json(), 400)
    async with http.post(f"{server.url}/login", json={"username": "admin"}) as resp:
        body = await resp.json()
        assert resp.status == 400 and "password" in body["message"]


async def test_consume_input_errors_name_the_parameter(server: WebNode, http: aiohttp.ClientSession) -> None:
    headers = await server.headers(http)
    name = unique("add")
    async with http.post(f"{server.url}/services/{name}/1.0", json=ADD, headers=headers) as resp:
        assert resp.status == 201
    cases = [({"x": 1}, "y"), ({"x": 1, "y": 2, "z": 3}, "z"), ({"x": "one", "y": 2}, "x"), ([1, 2], None)]
    for body, field in cases:
        async with http.post(f"{server.url}/api/{name}/1.0", json=body, headers=headers) as resp:
            assert resp.status == 400
            error = await resp.json()
        assert_error(error, 400)
        if field:
            assert error["fields"] == field and f"'{field}'" in error["message"]


async def test_failing_user_code_reports_the_error(server: WebNode, http: aiohttp.ClientSession) -> None:
    headers = await server.headers(http)
    name = unique("boom")
    definition = {**ADD, "code": "print('before')\nresult = x / 0"}
    async with http.post(f"{server.url}/services/{name}/1.0", json=definition, headers=headers) as resp:
        assert resp.status == 201
    async with http.post(f"{server.url}/api/{name}/1.0", json={"x": 1, "y": 2}, headers=headers) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert result["success"] is False
    assert result["errorMessage"] == "ZeroDivisionError: float division by zero"
    assert result["consoleOutput"].startswith("before\n")
    assert "Traceback" in result["consoleOutput"]


async def test_compute_node_down_fails_status_and_503(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    compute, uri = await start_compute_node(tmp_path / "compute", O16N_R_ENABLED="false")
    web = await start_web_node(tmp_path / "web", [uri])
    try:
        headers = await web.headers(http)
        name = unique("add")
        async with http.post(f"{web.url}/services/{name}/1.0", json=ADD, headers=headers) as resp:
            assert resp.status == 201
        async with http.post(f"{web.url}/api/{name}/1.0", json={"x": 1, "y": 2}, headers=headers) as resp:
            assert (await resp.json())["outputParameters"] == {"result": 3}
        compute.stop()
        async with http.post(f"{web.url}/api/{name}/1.0", json={"x": 1, "y": 2}, headers=headers) as resp:
            assert resp.status == 503
            assert_error(await resp.json(), 503)
        async with http.get(f"{web.url}/status", headers=headers) as resp:
            body = await resp.json()
        assert body["statusCode"] == "fail"
        node = body["components"]["backends"]["components"][uri]
        assert node["statusCode"] == "fail" and node["details"]["error"]
    finally:
        web.process.stop()
        compute.stop()
