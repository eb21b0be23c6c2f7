"""Nothing a service leaves in a pooled shell reaches a session that later gets that shell."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support import WebNode, unique


@pytest.mark.parametrize(
    ("runtime", "init_code", "probe"),
    [
        (
            "Python",
            "open('leak.txt', 'w').write('secret')\nsecret = 42",
            "names = sorted(os.listdir('.')) + sorted(k for k in globals() if k == 'secret')",
        ),
        (
            "R",
            "writeLines('secret', 'leak.txt')\nsecret <- 42",
            "names <- c(list.files('.'), ls(globalenv(), pattern = '^secret$'))",
        ),
    ],
    ids=["python", "r"],
)
async def test_session_after_service_starts_empty(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], runtime: str, init_code: str, probe: str
) -> None:
    name = unique("leaky")
    definition = {
        "code": "result = 1" if runtime == "Python" else "result <- 1",
        "initCode": init_code,
        "runtimeType": runtime,
        "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
    }
    async with http.post(f"{server.url}/services/{name}/1.0", json=definition, headers=auth) as resp:
        assert resp.status == 201
    for _ in range(4):  # every idle shell of the pool now holds the service's file and objects
        async with http.post(f"{server.url}/api/{name}/1.0", json={}, headers=auth) as resp:
            assert (await resp.json())["success"] is True
    sessions = []
    try:
        for _ in range(2):
            async with http.post(f"{server.url}/sessions", json={"runtimeType": runtime}, headers=auth) as resp:
                assert resp.status == 201
                sid = (await resp.json())["sessionId"]
                sessions.append(sid)
            async with http.get(f"{server.url}/sessions/{sid}/files", headers=auth) as resp:
                assert await resp.json() == []
            code = ("import os\n" if runtime == "Python" else "") + probe
            body = {"code": code, "outputParameters": ["names"]}
            async with http.post(f"{server.url}/sessions/{sid}/execute", json=body, headers=auth) as resp:
                result = await resp.json()
            assert result["success"] is True, result
            assert result["outputParameters"][0]["value"] in ([], None), result
    finally:
        for sid in sessions:
            async with http.delete(f"{server.url}/sessions/{sid}", headers=auth):
                pass
