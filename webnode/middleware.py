"""HTTP middlewares: the web node's edge of the error model, and authentication."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from common.errors import AppError, Internal, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized
from webnode.auth.audit import REQUEST_ID
from webnode.auth.context import authenticator_key
from webnode.keys import PRINCIPAL

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (method, route) pairs reachable without an access token.
PUBLIC = {
    ("POST", "/login"),
    ("POST", "/login/refreshToken"),
    ("DELETE", "/login/refreshToken"),
    ("GET", "/healthz"),
}


def error_response(error: AppError) -> web.Response:
    return web.Response(
        body=orjson.dumps(error.to_json()),
        status=error.status,
        content_type="application/json",
        headers=error.headers,
    )


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A correlation id per request: the client's X-Request-Id when sane, else a new one; echoed back."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()  # uuid4's bits, no UUID object
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_http_error(exc))
    except Exception:
        request_id = str(request.get(REQUEST_ID) or uuid.uuid4().hex)
        logger.exception("unhandled error %s on %s %s", request_id, request.method, request.path)
        return error_response(Internal(f"internal server error (request id {request_id})"))


def _http_error(exc: web.HTTPException) -> AppError:
    if exc.status == 404:
        return NotFound("no such resource")
    if exc.status == 405:
        return MethodNotAllowed("method not allowed on this resource")
    if exc.status == 413:
        return PayloadTooLarge("the request body is too large")
    error = AppError(exc.reason or "request failed")
    error.status = exc.status  # type: ignore[misc]
    return error


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    resource = route.resource
    canonical = resource.canonical if resource is not None else ""
    if (request.method, canonical) in PUBLIC or resource is None or (route.method == "*" and canonical == ""):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer access token", headers={"WWW-Authenticate": "Bearer"})
    request[PRINCIPAL] = await request.app[authenticator_key].authenticate(token.strip())
    return await handler(request)


def parse_json(raw: bytes) -> object:
    """Decode a request body; InvalidInput says where the JSON is broken."""
    from common.errors import InvalidInput

    if not raw.strip():
        raise InvalidInput("the request body is empty; a JSON document is expected")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            json.loads(raw)
        except json.JSONDecodeError as detail:
            raise InvalidInput(f"malformed JSON: {detail.msg} at line {detail.lineno} column {detail.colno}") from None
        except UnicodeDecodeError:
            raise InvalidInput("the request body is not UTF-8 text") from None
        raise InvalidInput(f"malformed JSON: {exc}") from None
