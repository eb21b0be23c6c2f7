"""Per-service swagger.json: Swagger 2.0 in ML Server's structure, valid, and enough to call the service."""

from __future__ import annotations

from typing import Any

import aiohttp
from openapi_spec_validator import validate

from tests.support import WebNode, unique
from tests.test_services import ADD, expect_error, publish

TYPES = ["logical", "numeric", "integer", "character", "vector", "matrix", "data.frame"]
JSON_TYPES = ["boolean", "number", "integer", "string", "array", "array", "object"]


async def fetch(http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str], name: str) -> dict[str, Any]:
    async with http.get(f"{server.url}/api/{name}/1.0/swagger.json", headers=auth) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        doc = await resp.json()
    assert isinstance(doc, dict)
    return doc


async def test_swagger_structure_and_validity(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "Python",
        "code": "pass",
        "description": "every type",
        "inputParameterDefinitions": [{"name": f"in_{i}", "type": t} for i, t in enumerate(TYPES)],
        "outputParameterDefinitions": [{"name": f"out_{i}", "type": t} for i, t in enumerate(TYPES)],
    }
    name = await publish(http, server, auth, definition)
    doc = await fetch(http, server, auth, name)
    validate(doc)  # openapi-spec-validator: a valid Swagger 2.0 document
    assert list(doc)[:4] == ["swagger", "info", "schemes", "securityDefinitions"]
    assert doc["swagger"] == "2.0"
    assert "host" not in doc and "basePath" not in doc
    assert doc["info"] == {"description": "every type", "title": name, "version": "1.0"}
    assert doc["securityDefinitions"] == {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}}
    assert doc["tags"][0] == {"name": name, "description": "every type"}
    assert doc["consumes"] == doc["produces"] == ["application/json"]
    base = f"/api/{name}/1.0"
    operations = {
        (path, method): op["operationId"] for path, item in doc["paths"].items() for method, op in item.items()
    }
    assert operations == {
        ("/login", "post"): "login",
        ("/login/refreshToken", "post"): "renewToken",
        ("/login/refreshToken", "delete"): "revokeRefreshToken",
        (base, "post"): "ConsumeWebService",
        (f"{base}/batch", "post"): "StartBatchExecution",
        (f"{base}/batch", "get"): "GetBatchExecutions",
        (f"{base}/batch/{{executionId}}", "get"): "GetBatchExecutionStatus",
        (f"{base}/batch/{{executionId}}", "delete"): "CancelAndDeleteBatchExecution",
        (f"{base}/batch/{{executionId}}/{{index}}/files", "get"): "GetBatchExecutionFiles",
        (f"{base}/batch/{{executionId}}/{{index}}/files/{{fileName}}", "get"): "GetBatchExecutionFile",
    }
    consume_op = doc["paths"][base]["post"]
    assert consume_op["parameters"][0]["name"] == "WebServiceParameters"
    assert consume_op["parameters"][0]["schema"] == {"$ref": "#/definitions/InputParameters"}
    assert consume_op["responses"]["200"]["schema"] == {"$ref": "#/definitions/WebServiceResult"}
    assert consume_op["security"] == [{"Bearer": []}]
    assert doc["paths"][f"{base}/batch"]["post"]["responses"]["202"]["schema"] == {
        "$ref": "#/definitions/StartBatchExecutionResponse"
    }
    for key in ("InputParameters", "OutputParameters"):
        props = doc["definitions"][key]["properties"]
        prefix = "in" if key == "InputParameters" else "out"
        assert [(p["type"], p["description"]) for p in props.values()] == list(zip(JSON_TYPES, TYPES, strict=True))
        assert list(props) == [f"{prefix}_{i}" for i in range(len(TYPES))]
    assert set(doc["definitions"]) == {
        "InputParameters",
        "OutputParameters",
        "Error",
        "WebServiceResult",
        "StartBatchExecutionResponse",
        "BatchWebServiceResult",
        "LoginRequest",
        "RenewTokenRequest",
        "AccessTokenResponse",
    }
    assert set(doc["definitions"]["WebServiceResult"]["properties"]) == {
        "success",
        "errorMessage",
        "consoleOutput",
        "changedFiles",
        "outputParameters",
        "outputFiles",
    }


async def test_operation_id_alias_and_errors(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server, auth, {**ADD, "operationId": "add_them"})
    doc = await fetch(http, server, auth, name)
    validate(doc)
    assert doc["paths"][f"/api/{name}/1.0"]["post"]["operationId"] == "add_them"
    async with http.get(f"{server.url}/api/{name}/2.0/swagger.json", headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(f"{server.url}/api/{unique('none')}/1.0/swagger.json", headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(f"{server.url}/api/{name}/1.0/swagger.json") as resp:
        await expect_error(resp, 401)


async def test_a_client_built_from_swagger_calls_the_service(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    """What a generated client does: log in and call the operation using only what the document says."""
    name = await publish(http, server, auth, {**ADD, "operationId": "add_them"})
    doc = await fetch(http, server, auth, name)
    by_id = {
        op["operationId"]: (path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
    }

    async def call(operation_id: str, body: Any, token: str | None = None) -> Any:
        path, method, op = by_id[operation_id]
        (param,) = [p for p in op["parameters"] if p["in"] == "body"]
        headers = {"Content-Type": doc["consumes"][0]}
        if token is not None:
            scheme = doc["securityDefinitions"][next(iter(op["security"][0]))]
            headers[scheme["name"]] = f"Bearer {token}"
        assert param["schema"]["$ref"].startswith("#/definitions/")
        async with http.request(method.upper(), server.url + path, json=body, headers=headers) as resp:
            assert resp.status == 200
            return await resp.json()

    tokens = await call("login", {"username": "admin", "password": "Test-Passw0rd!"})
    result = await call("add_them", {"x": 20, "y": 22}, tokens["access_token"])
    assert set(result) == set(doc["definitions"]["WebServiceResult"]["properties"])
    assert result["outputParameters"] == {"result": 42}
