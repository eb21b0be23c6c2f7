"""Services management and consumption against real servers in both store modes."""

from __future__ import annotations

import asyncio
import base64
import re
import urllib.parse
import uuid
from typing import Any

import aiohttp
import pytest

from tests.support import WebNode, create_user, login, unique
from tests.test_foundation import assert_error

ADD: dict[str, Any] = {
    "code": "result = x + y",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}
RECORD_FIELDS = {
    "name",
    "version",
    "versionPublishedBy",
    "owner",
    "creationTime",
    "snapshotId",
    "runtimeType",
    "initCode",
    "code",
    "description",
    "operationId",
    "inputParameterDefinitions",
    "outputParameterDefinitions",
    "outputFileNames",
    "myPermissionOnService",
}
CREATION_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}$")


# ---------------------------------------------------------------- helpers (other test modules import these)


async def user_headers(server: WebNode, role: str) -> dict[str, str]:
    """A new local user with `role` (through `o16n admin user add`); returns auth headers for it."""
    username, password = unique(role.lower()), "Us3r-Passw0rd!"
    await create_user(server, username, password, role)
    async with aiohttp.ClientSession() as http:
        token = await login(http, server.url, username, password)
    return {"Authorization": f"Bearer {token}", "X-User": username}


async def publish(
    http: aiohttp.ClientSession,
    server: WebNode,
    headers: dict[str, str],
    definition: dict[str, Any],
    name: str | None = None,
    version: str = "1.0",
) -> str:
    name = name or unique("svc")
    async with http.post(f"{server.url}/services/{name}/{version}", json=definition, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    return name


async def consume(
    http: aiohttp.ClientSession, server: WebNode, headers: dict[str, str], name: str, body: Any, version: str = "1.0"
) -> dict[str, Any]:
    async with http.post(f"{server.url}/api/{name}/{version}", json=body, headers=headers) as resp:
        result = await resp.json()
        assert resp.status == 200, result
    assert isinstance(result, dict)
    return result


async def expect_error(resp: aiohttp.ClientResponse, status: int, *, field: str | None = None) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert_error(body, status)
    if field is not None:
        assert body.get("fields") == field, body
    assert isinstance(body, dict)
    return body


@pytest.fixture
async def second_user(server: WebNode) -> Any:
    """A factory: await second_user("Contributor" | "Reader") -> auth headers of a new user."""

    async def make(role: str) -> dict[str, str]:
        return await user_headers(server, role)

    return make


# ---------------------------------------------------------------- publish / list / get


async def test_publish_and_get_record_with_every_field(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = unique("rec")
    definition = {
        **ADD,
        "description": "adds two numbers",
        "operationId": "add_numbers",
        "initCode": "import math",
        "outputFileNames": ["plot.png"],
    }
    async with http.post(f"{server.url}/services/{name}/v1", json=definition, headers=auth) as resp:
        assert resp.status == 201
        assert await resp.json() == f"/api/{name}/v1"
    async with http.get(f"{server.url}/services/{name}/v1", headers=auth) as resp:
        assert resp.status == 200
        record = await resp.json()
    assert set(record) == RECORD_FIELDS
    assert CREATION_TIME.match(record["creationTime"]), record["creationTime"]
    assert record | {"creationTime": None} == {
        "name": name,
        "version": "v1",
        "versionPublishedBy": "admin",
        "owner": "admin",
        "creationTime": None,
        "snapshotId": None,
        "runtimeType": "Python",
        "initCode": "import math",
        "code": "result = x + y",
        "description": "adds two numbers",
        "operationId": "add_numbers",
        "inputParameterDefinitions": ADD["inputParameterDefinitions"],
        "outputParameterDefinitions": ADD["outputParameterDefinitions"],
        "outputFileNames": ["plot.png"],
        "myPermissionOnService": "read/write",
    }


async def test_runtime_defaults_to_r_and_types_are_normalized(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "code": "result <- x + y",
        "inputParameterDefinitions": [{"name": "x", "type": "float"}, {"name": "y", "type": "int"}],
        "outputParameterDefinitions": [{"name": "result", "type": "pandas.DataFrame"}],
    }
    name = await publish(http, server, auth, definition)
    async with http.get(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        record = await resp.json()
    assert record["runtimeType"] == "R"
    assert [p["type"] for p in record["inputParameterDefinitions"]] == ["numeric", "integer"]
    assert record["outputParameterDefinitions"] == [{"name": "result", "type": "data.frame"}]
    assert record["initCode"] == "" and record["outputFileNames"] == []


async def test_publish_without_version_makes_a_guid(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = unique("guid")
    async with http.post(f"{server.url}/services/{name}", json=ADD, headers=auth) as resp:
        assert resp.status == 201
        path = await resp.json()
    version = path.rsplit("/", 1)[1]
    assert path == f"/api/{name}/{version}"
    uuid.UUID(version)
    await publish(http, server, auth, ADD, name=name, version="2.0")
    async with http.get(f"{server.url}/services/{name}", headers=auth) as resp:
        versions = [s["version"] for s in await resp.json()]
    assert versions == [version, "2.0"]  # oldest first
    assert (await consume(http, server, auth, name, {"x": 2, "y": 3}, version=version))["outputParameters"] == {
        "result": 5
    }
    async with http.get(f"{server.url}/services", headers=auth) as resp:
        listed = {(s["name"], s["version"]) for s in await resp.json()}
    assert {(name, version), (name, "2.0")} <= listed


async def test_publish_errors(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    name = await publish(http, server, auth, ADD)
    async with http.post(f"{server.url}/services/{name}/1.0", json=ADD, headers=auth) as resp:
        await expect_error(resp, 409)
    bad_definitions: list[tuple[Any, str | None]] = [
        ({**ADD, "code": None}, "code"),
        ({**ADD, "code": "   "}, "code"),
        ({k: v for k, v in ADD.items() if k != "code"}, "code"),
        ({**ADD, "runtimeType": "Julia"}, "runtimeType"),
        ({**ADD, "inputParameterDefinitions": [{"name": "x", "type": "complex"}]}, None),
        ({**ADD, "inputParameterDefinitions": [{"name": "1x", "type": "numeric"}]}, None),
        ({**ADD, "inputParameterDefinitions": [{"name": "x"}]}, None),
        ({**ADD, "inputParameterDefinitions": "x"}, "inputParameterDefinitions"),
        ({**ADD, "outputParameterDefinitions": [{"name": "r", "type": "t"}, {"name": "r", "type": "t"}]}, None),
        ({**ADD, "inputParameterDefinitions": [{"name": "x", "type": "numeric"}] * 2}, "inputParameterDefinitions"),
        ({**ADD, "outputFileNames": ["../etc/passwd"]}, "outputFileNames"),
        ({**ADD, "operationId": "not an id"}, "operationId"),
        ({**ADD, "code": 42}, "code"),
        (["not", "an", "object"], None),
    ]
    for definition, field in bad_definitions:
        async with http.post(f"{server.url}/services/{unique('bad')}/1.0", json=definition, headers=auth) as resp:
            body = await expect_error(resp, 400)
        if field:
            assert body["fields"] == field, (definition, body)
    for bad_name in ("has space", "-dash", "x" * 200):
        url = f"{server.url}/services/{urllib.parse.quote(bad_name)}/1.0"
        async with http.post(url, json=ADD, headers=auth) as resp:
            await expect_error(resp, 400, field="name")
    async with http.post(f"{server.url}/services/{unique('ok')}/bad%20version", json=ADD, headers=auth) as resp:
        await expect_error(resp, 400, field="version")
    async with http.post(f"{server.url}/services/{unique('x')}/1.0", json=ADD) as resp:
        await expect_error(resp, 401)


async def test_missing_service_is_404(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    name = await publish(http, server, auth, ADD)
    url = f"{server.url}/services/{name}/9.9"
    async with http.get(url, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.patch(url, json={"code": "result = 1"}, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.delete(url, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.post(f"{server.url}/api/{name}/9.9", json={"x": 1, "y": 2}, headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(f"{server.url}/services/{unique('none')}", headers=auth) as resp:
        assert resp.status == 200 and await resp.json() == []


# ---------------------------------------------------------------- patch / delete


async def test_patch_updates_fields_and_consumers_see_new_code(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server, auth, {**ADD, "description": "first"})
    assert (await consume(http, server, auth, name, {"x": 1, "y": 2}))["outputParameters"] == {"result": 3}
    async with http.patch(
        f"{server.url}/services/{name}/1.0", json={"code": "result = x * y", "operationId": "mul"}, headers=auth
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == f"/api/{name}/1.0"
    assert (await consume(http, server, auth, name, {"x": 4, "y": 2}))["outputParameters"] == {"result": 8}
    async with http.get(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        record = await resp.json()
    assert record["description"] == "first" and record["operationId"] == "mul" and record["code"] == "result = x * y"
    patch = {"inputParameterDefinitions": [{"name": "x", "type": "numeric"}], "code": "result = x"}
    async with http.patch(f"{server.url}/services/{name}/1.0", json=patch, headers=auth) as resp:
        assert resp.status == 200
    assert (await consume(http, server, auth, name, {"x": 7}))["outputParameters"] == {"result": 7}
    for bad, field in (({"code": ""}, "code"), ({"runtimeType": "Go"}, "runtimeType")):
        async with http.patch(f"{server.url}/services/{name}/1.0", json=bad, headers=auth) as resp:
            await expect_error(resp, 400, field=field)
    async with http.patch(f"{server.url}/services/{name}/1.0", data=b"{oops", headers=auth) as resp:
        await expect_error(resp, 400)


async def test_delete_removes_the_service(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    name = await publish(http, server, auth, ADD)
    await consume(http, server, auth, name, {"x": 1, "y": 1})
    async with http.delete(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        assert resp.status == 200
        await resp.json()
    async with http.get(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.post(f"{server.url}/api/{name}/1.0", json={"x": 1, "y": 1}, headers=auth) as resp:
        await expect_error(resp, 404)
    await publish(http, server, auth, ADD, name=name)  # the name and version can be used again


# ---------------------------------------------------------------- roles


async def test_roles_decide_who_may_change_a_service(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], second_user: Any
) -> None:
    contributor = await second_user("Contributor")
    reader = await second_user("Reader")
    admins = await publish(http, server, auth, ADD)
    theirs = await publish(http, server, contributor, ADD)

    async with http.get(f"{server.url}/services/{admins}/1.0", headers=contributor) as resp:
        assert (await resp.json())["myPermissionOnService"] == "read only"
    async with http.get(f"{server.url}/services/{theirs}", headers=contributor) as resp:
        (record,) = await resp.json()
    assert record["myPermissionOnService"] == "read/write"
    assert record["versionPublishedBy"] == contributor["X-User"]
    async with http.get(f"{server.url}/services/{theirs}/1.0", headers=auth) as resp:
        assert (await resp.json())["myPermissionOnService"] == "read/write"  # Owner manages any service
    async with http.get(f"{server.url}/services/{theirs}/1.0", headers=reader) as resp:
        assert (await resp.json())["myPermissionOnService"] == "read only"

    # A contributor may not change, delete or add versions to another user's service.
    async with http.patch(f"{server.url}/services/{admins}/1.0", json={"code": "result = 0"}, headers=contributor) as r:
        await expect_error(r, 403)
    async with http.delete(f"{server.url}/services/{admins}/1.0", headers=contributor) as resp:
        await expect_error(resp, 403)
    async with http.post(f"{server.url}/services/{admins}/2.0", json=ADD, headers=contributor) as resp:
        await expect_error(resp, 403)
    # A reader may consume and list but not publish or change.
    assert (await consume(http, server, reader, theirs, {"x": 1, "y": 2}))["success"] is True
    async with http.post(f"{server.url}/services/{unique('r')}/1.0", json=ADD, headers=reader) as resp:
        await expect_error(resp, 403)
    async with http.patch(f"{server.url}/services/{theirs}/1.0", json={"code": "result = 0"}, headers=reader) as r:
        await expect_error(r, 403)
    # The owner of a service changes it; an Owner changes anyone's.
    async with http.patch(f"{server.url}/services/{theirs}/1.0", json={"description": "d"}, headers=contributor) as r:
        assert r.status == 200
    await publish(http, server, auth, ADD, name=theirs, version="2.0")
    async with http.delete(f"{server.url}/services/{theirs}/1.0", headers=auth) as resp:
        assert resp.status == 200


# ---------------------------------------------------------------- consumption


async def test_init_code_runs_once_per_shell(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "Python",
        "initCode": "state = {'inits': 0, 'calls': 0}\nstate['inits'] += 1",
        "code": "state['calls'] += 1\ninits = state['inits']\ncalls = state['calls']",
        "outputParameterDefinitions": [{"name": "inits", "type": "integer"}, {"name": "calls", "type": "integer"}],
    }
    name = await publish(http, server, auth, definition)
    results = [(await consume(http, server, auth, name, {}))["outputParameters"] for _ in range(4)]
    assert all(r["inits"] == 1 for r in results), results
    assert max(r["calls"] for r in results) >= 2, results


async def test_output_files_are_base64_or_null(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "Python",
        "code": "with open('out.txt', 'w') as f:\n    f.write(text * 2)\nprint('wrote')",
        "inputParameterDefinitions": [{"name": "text", "type": "character"}],
        "outputFileNames": ["out.txt", "missing.png"],
    }
    name = await publish(http, server, auth, definition)
    for text in ("ab", "cd"):  # the file from one request does not leak into the next
        result = await consume(http, server, auth, name, {"text": text})
        assert result["success"] is True, result
        assert base64.b64decode(result["outputFiles"]["out.txt"]) == (text * 2).encode()
        assert result["outputFiles"]["missing.png"] is None
        assert result["changedFiles"] == ["out.txt"]
        assert result["consoleOutput"] == "wrote\n"
        assert result["outputParameters"] == {}


async def test_values_of_every_type_round_trip(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    types = ["logical", "numeric", "integer", "character", "vector", "matrix", "data.frame"]
    definition = {
        "runtimeType": "Python",
        "code": "\n".join(f"o_{t.replace('.', '_')} = i_{t.replace('.', '_')}" for t in types)
        + "\nkind = type(i_data_frame).__name__ + ',' + type(i_matrix).__name__",
        "inputParameterDefinitions": [{"name": f"i_{t.replace('.', '_')}", "type": t} for t in types],
        "outputParameterDefinitions": [{"name": f"o_{t.replace('.', '_')}", "type": t} for t in types]
        + [{"name": "kind", "type": "character"}],
    }
    name = await publish(http, server, auth, definition)
    inputs = {
        "i_logical": True,
        "i_numeric": 1.5,
        "i_integer": 3,
        "i_character": "héllo",
        "i_vector": [1, 2, 3],
        "i_matrix": [[1, 2], [3, 4]],
        "i_data_frame": {"a": [1, 2], "b": ["x", "y"]},
    }
    result = await consume(http, server, auth, name, inputs)
    assert result["success"] is True, result
    outputs = result["outputParameters"]
    assert outputs.pop("kind") == "DataFrame,matrix"
    assert outputs == {k.replace("i_", "o_"): v for k, v in inputs.items()}


async def test_consume_input_checks(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    types = ["logical", "numeric", "integer", "character", "vector", "matrix", "data.frame"]
    definition = {
        "runtimeType": "Python",
        "code": "ok = True",
        "inputParameterDefinitions": [{"name": t.replace(".", "_"), "type": t} for t in types],
        "outputParameterDefinitions": [{"name": "ok", "type": "logical"}],
    }
    name = await publish(http, server, auth, definition)
    good = {
        "logical": False,
        "numeric": 2,
        "integer": 2.0,
        "character": "",
        "vector": ["a", None],
        "matrix": [[1.5]],
        "data_frame": [{"a": 1}],
    }
    assert (await consume(http, server, auth, name, good))["outputParameters"] == {"ok": True}
    assert (await consume(http, server, auth, name, dict.fromkeys(good)))["success"] is True  # nulls are missing values
    bad_values = {
        "logical": "true",
        "numeric": "1",
        "integer": 1.5,
        "character": 5,
        "vector": [{"a": 1}],
        "matrix": [[1], [2, 3]],
        "data_frame": {"a": [1, 2], "b": [1]},
    }
    url = f"{server.url}/api/{name}/1.0"
    for field, value in bad_values.items():
        async with http.post(url, json={**good, field: value}, headers=auth) as resp:
            body = await expect_error(resp, 400, field=field)
        assert f"'{field}'" in body["message"]
    async with http.post(url, json={k: v for k, v in good.items() if k != "matrix"}, headers=auth) as resp:
        assert "missing" in (await expect_error(resp, 400, field="matrix"))["message"]
    async with http.post(url, json={**good, "extra": 1}, headers=auth) as resp:
        assert "unknown" in (await expect_error(resp, 400, field="extra"))["message"]
    for raw in (b"", b"null", b"[]", b"{bad json", b'"text"'):
        async with http.post(url, data=raw, headers={**auth, "Content-Type": "application/json"}) as resp:
            await expect_error(resp, 400)
    async with http.post(url, json=good) as resp:
        await expect_error(resp, 401)
    async with http.post(url, json=good, headers={"Authorization": "Bearer nonsense"}) as resp:
        await expect_error(resp, 401)


async def test_service_without_inputs_accepts_an_empty_body(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "Python",
        "code": "answer = 42",
        "outputParameterDefinitions": [{"name": "answer", "type": "integer"}],
    }
    name = await publish(http, server, auth, definition)
    for raw in (b"", b"{}"):
        async with http.post(f"{server.url}/api/{name}/1.0", data=raw, headers=auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["outputParameters"] == {"answer": 42}


async def test_failing_code_and_bad_outputs_report_success_false(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    failing_init = {**ADD, "initCode": "raise RuntimeError('init broke')"}
    name = await publish(http, server, auth, failing_init)
    result = await consume(http, server, auth, name, {"x": 1, "y": 2})
    assert result["success"] is False and "init broke" in result["errorMessage"]
    wrong_output = {**ADD, "code": "result = 'not a number'"}
    name = await publish(http, server, auth, wrong_output)
    result = await consume(http, server, auth, name, {"x": 1, "y": 2})
    assert result["success"] is False and "result" in result["errorMessage"]
    syntax = {**ADD, "code": "result = (("}
    name = await publish(http, server, auth, syntax)
    result = await consume(http, server, auth, name, {"x": 1, "y": 2})
    assert result["success"] is False and "SyntaxError" in result["errorMessage"]
    # The shell recovers: a good service still works afterwards.
    name = await publish(http, server, auth, ADD)
    assert (await consume(http, server, auth, name, {"x": 1, "y": 2}))["outputParameters"] == {"result": 3}


# ---------------------------------------------------------------- snapshots


async def _snapshot(
    http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str], code: str, cleanup: str = ""
) -> str:
    """A snapshot of a new Python session after `code`; `cleanup` runs before the session closes."""
    async with http.post(f"{server.url}/sessions", json={"runtimeType": "Python"}, headers=auth) as resp:
        assert resp.status in (200, 201), await resp.text()
        session = (await resp.json())["sessionId"]
    try:
        async with http.post(f"{server.url}/sessions/{session}/execute", json={"code": code}, headers=auth) as resp:
            assert (await resp.json())["success"] is True
        async with http.post(f"{server.url}/sessions/{session}/snapshot", json={"name": "s"}, headers=auth) as resp:
            assert resp.status in (200, 201), await resp.text()
            snapshot = str((await resp.json())["snapshotId"])
        if cleanup:
            async with http.post(f"{server.url}/sessions/{session}/execute", json={"code": cleanup}, headers=auth) as r:
                assert (await r.json())["success"] is True
        return snapshot
    finally:
        async with http.delete(f"{server.url}/sessions/{session}", headers=auth):
            pass


async def test_a_service_keeps_its_own_copy_of_the_snapshot(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    code = "import numpy as np\nweights = np.array([1.0, 2.0])\nwith open('bias.txt', 'w') as f:\n    f.write('0.5')"
    snapshot = await _snapshot(http, server, auth, code)
    definition = {
        "runtimeType": "Python",
        "snapshotId": snapshot,
        "initCode": "bias = float(open('bias.txt').read())",
        "code": "result = float(weights @ [x, x]) + bias",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
    }
    name = await publish(http, server, auth, definition)
    async with http.delete(f"{server.url}/snapshots/{snapshot}", headers=auth) as resp:
        assert resp.status == 200  # Microsoft's client deletes it right after publishing
    result = await consume(http, server, auth, name, {"x": 2})
    assert result["outputParameters"] == {"result": 6.5}, result
    async with http.get(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        own = (await resp.json())["snapshotId"]
    assert own and own != snapshot
    async with http.get(f"{server.url}/snapshots", headers=auth) as resp:
        assert own not in {s.get("id") for s in await resp.json()}  # the copy is the service's, not the user's
    # A new snapshot through PATCH replaces the objects; an empty session's snapshot leaves them alone.
    replacement = await _snapshot(
        http, server, auth, "import numpy as np\nweights = np.array([10.0, 0.0])\nopen('bias.txt', 'w').write('1')"
    )
    async with http.patch(f"{server.url}/services/{name}/1.0", json={"snapshotId": replacement}, headers=auth) as r:
        assert r.status == 200
    assert (await consume(http, server, auth, name, {"x": 2}))["outputParameters"] == {"result": 21.0}
    # (binds no name; removes a file an earlier session may have left in a reused working directory)
    empty = await _snapshot(
        http, server, auth, "__import__('os').path.exists('bias.txt') and __import__('os').remove('bias.txt')"
    )
    async with http.patch(f"{server.url}/services/{name}/1.0", json={"snapshotId": empty}, headers=auth) as resp:
        assert resp.status == 200
    assert (await consume(http, server, auth, name, {"x": 2}))["outputParameters"] == {"result": 21.0}
    for bad in ("no-such-snapshot", snapshot):  # unknown, or already deleted
        async with http.post(
            f"{server.url}/services/{unique('snap')}/1.0", json={**definition, "snapshotId": bad}, headers=auth
        ) as resp:
            await expect_error(resp, 400, field="snapshotId")
        async with http.patch(f"{server.url}/services/{name}/1.0", json={"snapshotId": bad}, headers=auth) as resp:
            await expect_error(resp, 400, field="snapshotId")


async def test_concurrent_first_requests_share_one_definition_load(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server, auth, ADD)
    missing = unique("none")

    async def call(service: str) -> int:
        async with http.post(f"{server.url}/api/{service}/1.0", json={"x": 1, "y": 2}, headers=auth) as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(call(name) for _ in range(20)), *(call(missing) for _ in range(5)))
    assert statuses == [200] * 20 + [404] * 5
