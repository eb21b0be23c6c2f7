"""The per-service Swagger 2.0 document (semantics §2): login paths, consume, batch, definitions.

Like ML Server's, it has no `host` or `basePath`: clients point it at the server they use.
"""

from __future__ import annotations

from typing import Any

from common import values
from webnode.store.services import Parameter, Service

DEFAULT_OPERATION_ID = "ConsumeWebService"
_JSON = ["application/json"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "schema": _ref("Error")}


def _parameters_schema(params: tuple[Parameter, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for p in params:
        prop: dict[str, Any] = {"type": values.JSON_SCHEMA_TYPES.get(p.type, "object"), "description": p.type}
        if p.type == "vector":
            prop["items"] = {}
        elif p.type == "matrix":
            prop["items"] = {"type": "array", "items": {}}
        properties[p.name] = prop
    return {"type": "object", "properties": properties}


def _login_paths() -> dict[str, Any]:
    return {
        "/login": {
            "post": {
                "tags": ["User"],
                "summary": "Logs the user in",
                "operationId": "login",
                "parameters": [
                    {"in": "body", "name": "loginRequest", "required": True, "schema": _ref("LoginRequest")}
                ],
                "responses": {
                    "200": {"description": "OK", "schema": _ref("AccessTokenResponse")},
                    "default": _error_response("Error \n * 401 - Invalid Password"),
                },
            }
        },
        "/login/refreshToken": {
            "post": {
                "tags": ["User"],
                "summary": "The user renews access token and refresh token",
                "operationId": "renewToken",
                "parameters": [
                    {
                        "in": "body",
                        "name": "renewTokenRequest",
                        "required": True,
                        "schema": _ref("RenewTokenRequest"),
                    }
                ],
                "responses": {
                    "200": {"description": "OK", "schema": _ref("AccessTokenResponse")},
                    "default": _error_response("Error \n * 401 - Invalid Refresh Token"),
                },
            },
            "delete": {
                "tags": ["User"],
                "summary": "The user revokes a refresh token",
                "operationId": "revokeRefreshToken",
                "parameters": [
                    {"in": "query", "name": "refreshToken", "required": True, "type": "string"},
                ],
                "responses": {
                    "200": {"description": "OK", "schema": _ref("AccessTokenResponse")},
                    "default": _error_response("Error"),
                },
            },
        },
    }


def _batch_paths(service: Service, tag: str) -> dict[str, Any]:
    base = f"/api/{service.name}/{service.version}/batch"
    secured = {"tags": [tag], "security": [{"Bearer": []}]}
    execution_id = {"in": "path", "name": "executionId", "required": True, "type": "string"}
    index = {"in": "path", "name": "index", "required": True, "type": "integer", "format": "int32"}
    not_found = "Error \n * 404 - Web service not found \n * 404 - Execution not found \n * 400 - Bad request"
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        base: {
            "post": {
                **secured,
                "description": f"Consume the {service.name} web service asynchronously.",
                "operationId": "StartBatchExecution",
                "parameters": [
                    {
                        "in": "body",
                        "name": "BatchWebServiceParameters",
                        "required": True,
                        "schema": {"type": "array", "items": _ref("InputParameters")},
                    },
                    {"in": "query", "name": "parallelCount", "required": False, "type": "integer", "format": "int32"},
                ],
                "responses": {
                    "202": {"description": "Accepted", "schema": _ref("StartBatchExecutionResponse")},
                    "default": _error_response("Error \n * 404 - Web service not found \n * 400 - Bad request"),
                },
            },
            "get": {
                **secured,
                "description": "Gets all batch executions for this service.",
                "operationId": "GetBatchExecutions",
                "parameters": [],
                "responses": {"200": {"description": "OK", "schema": strings}, "default": _error_response(not_found)},
            },
        },
        base + "/{executionId}": {
            "get": {
                **secured,
                "description": "Gets the state and the results of a batch execution.",
                "operationId": "GetBatchExecutionStatus",
                "parameters": [
                    execution_id,
                    {"in": "query", "name": "showPartialResults", "required": False, "type": "boolean"},
                ],
                "responses": {
                    "200": {"description": "OK", "schema": _ref("BatchWebServiceResult")},
                    "default": _error_response(not_found),
                },
            },
            "delete": {
                **secured,
                "description": "Cancels and deletes a batch execution.",
                "operationId": "CancelAndDeleteBatchExecution",
                "parameters": [execution_id],
                "responses": {"200": {"description": "OK", "schema": strings}, "default": _error_response(not_found)},
            },
        },
        base + "/{executionId}/{index}/files": {
            "get": {
                **secured,
                "description": "Gets the names of the files one record of a batch execution produced.",
                "operationId": "GetBatchExecutionFiles",
                "parameters": [execution_id, index],
                "responses": {"200": {"description": "OK", "schema": strings}, "default": _error_response(not_found)},
            }
        },
        base + "/{executionId}/{index}/files/{fileName}": {
            "get": {
                **secured,
                "description": "Gets one file one record of a batch execution produced.",
                "operationId": "GetBatchExecutionFile",
                "produces": ["application/octet-stream"],
                "parameters": [
                    execution_id,
                    index,
                    {"in": "path", "name": "fileName", "required": True, "type": "string"},
                ],
                "responses": {
                    # ML Server wrote {"type": "file"}, which openapi-spec-validator rejects inside a schema.
                    "200": {"description": "OK", "schema": {"type": "string", "format": "binary"}},
                    "default": _error_response(not_found + " \n * 404 - File not found"),
                },
            }
        },
    }


def _definitions(service: Service) -> dict[str, Any]:
    string, integer = {"type": "string"}, {"type": "integer", "format": "int32"}
    return {
        "InputParameters": _parameters_schema(service.inputs),
        "OutputParameters": _parameters_schema(service.outputs),
        "Error": {
            "type": "object",
            "properties": {"code": integer, "message": string, "fields": string},
        },
        "WebServiceResult": {
            "type": "object",
            "properties": {
                "success": {
                    "type": "boolean",
                    "description": "Boolean flag indicating the success status of the execution.",
                },
                "errorMessage": {"type": "string", "description": "Error messages if any occurred during execution."},
                "consoleOutput": {"type": "string", "description": "Console output from the execution."},
                "changedFiles": {
                    "type": "array",
                    "items": string,
                    "description": "Files modified or created during the execution.",
                },
                "outputParameters": _ref("OutputParameters"),
                "outputFiles": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "format": "byte"},
                    "description": "Output files (outputFileNames) as base64, null when not produced.",
                },
            },
        },
        "StartBatchExecutionResponse": {"type": "object", "properties": {"batchExecutionId": string}},
        "BatchWebServiceResult": {
            "type": "object",
            "properties": {
                "state": {
                    "type": "string",
                    "enum": ["pending", "inProgress", "ready", "complete", "failed"],
                    "description": "State of the execution: Pending, InProgress, Complete or Failed.",
                },
                "totalItemCount": integer,
                "completedItemCount": integer,
                "batchExecutionResults": {"type": "array", "items": _ref("WebServiceResult")},
            },
        },
        "LoginRequest": {
            "type": "object",
            "required": ["username", "password"],
            "properties": {"username": string, "password": string},
        },
        "RenewTokenRequest": {"type": "object", "required": ["refreshToken"], "properties": {"refreshToken": string}},
        "AccessTokenResponse": {
            "type": "object",
            "properties": {
                "token_type": string,
                "access_token": string,
                "expires_on": string,
                "refresh_token": string,
            },
        },
    }


def service_swagger(service: Service) -> dict[str, Any]:
    """The Swagger 2.0 document of one service version."""
    description = service.description or ""
    tag = service.name
    consume_path = f"/api/{service.name}/{service.version}"
    return {
        "swagger": "2.0",
        "info": {"description": description, "title": service.name, "version": service.version},
        "schemes": ["http", "https"],
        "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        "tags": [{"name": tag, "description": description}, {"name": "User", "description": "Authentication"}],
        "consumes": _JSON,
        "produces": _JSON,
        "paths": {
            **_login_paths(),
            consume_path: {
                "post": {
                    "tags": [tag],
                    "description": f"Consume the {service.name} web service.",
                    "operationId": service.operation_id or DEFAULT_OPERATION_ID,
                    "parameters": [
                        {
                            "in": "body",
                            "name": "WebServiceParameters",
                            "required": True,
                            "schema": _ref("InputParameters"),
                        }
                    ],
                    "responses": {
                        "200": {"description": "OK", "schema": _ref("WebServiceResult")},
                        "400": {"description": "Bad Request.", "schema": _ref("Error")},
                        "500": {"description": "Internal Server Error.", "schema": _ref("Error")},
                        "default": _error_response("Error"),
                    },
                    "security": [{"Bearer": []}],
                }
            },
            **_batch_paths(service, tag),
        },
        "definitions": _definitions(service),
    }
