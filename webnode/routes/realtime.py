"""Realtime web services: POST /realtime-services/{name}[/{version}], PATCH /realtime-services/{name}/{version}.

A realtime service is an ordinary service row (runtimeType "Realtime", input `inputData`
and output `outputData`, both data.frame) whose `code` names its model by content hash;
the bytes live once in the central store (`realtime_models`). Listing, getting and
deleting go through /services; consumption through /api/{name}/{version}, which hands
Realtime services to `consume_realtime`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from common.errors import Conflict, InvalidInput, PayloadTooLarge
from common.pb import realtime_pb2 as rpb
from webnode.auth.roles import Action, require, require_manage
from webnode.compute.realtime import RealtimeDispatcher
from webnode.keys import cluster_key, db_key, principal, services_key, settings_key
from webnode.schemas import check_name
from webnode.store.realtime_models import ModelStore
from webnode.store.services import Parameter, Service

routes = web.RouteTableDef()
realtime_key = web.AppKey("realtime", RealtimeDispatcher)

RUNTIME = "Realtime"
DEFAULT_OPERATION_ID = "consume"
INPUTS = (Parameter("inputData", "data.frame"),)
OUTPUTS = (Parameter("outputData", "data.frame"),)
_HASH = re.compile(r"sha256:([0-9a-f]{64})")
_OPERATION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEXT_FIELDS = ("description", "operationId")


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    dispatcher = RealtimeDispatcher(app[cluster_key], ModelStore(app[db_key]))
    app[realtime_key] = dispatcher
    yield  # its channels are the cluster's (ComputeCluster.stubs), closed with it


@dataclass(frozen=True)
class RealtimeForm:
    model: bytes | None
    description: str | None
    operation_id: str | None


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the model is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: web.Request) -> RealtimeForm:
    """The multipart form: `model` file, `description`, `operationId`; 400 saying what is wrong."""
    limit = request.app[settings_key].max_body_size
    fields: dict[str, bytes] = {}
    if request.content_type == "application/x-www-form-urlencoded":  # text fields only (a PATCH)
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        form = await request.post()
        fields = {k: str(v).encode() for k, v in form.items() if k in ("model", *_TEXT_FIELDS)}
    elif request.content_type.startswith("multipart/"):
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name in ("model", *_TEXT_FIELDS):
                    fields[part.name] = await _read_part(part, limit)
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from None
    else:
        raise InvalidInput(
            "send multipart/form-data with a 'model' file part (and optional 'description' and 'operationId')"
        )
    texts: dict[str, str | None] = {}
    for name in _TEXT_FIELDS:
        try:
            texts[name] = fields[name].decode() if name in fields else None
        except UnicodeDecodeError:
            raise InvalidInput(f"{name} must be UTF-8 text", field=name) from None
    operation_id = texts["operationId"] or None
    if operation_id is not None and not _OPERATION_ID.match(operation_id):
        raise InvalidInput(f"operationId {operation_id!r} must be an identifier", field="operationId")
    return RealtimeForm(fields.get("model"), texts["description"], operation_id)


def model_hash(service: Service) -> str:
    match = _HASH.search(service.code)
    if match is None:
        raise InvalidInput(f"web service '{service.name}' version '{service.version}' has no model")
    return match.group(1)


async def _store_model(request: web.Request, content: bytes) -> str:
    """Load the model on the compute nodes (validating it), store its bytes; returns the service `code`."""
    if not content:
        raise InvalidInput("the model file is empty", field="model")
    digest = hashlib.sha256(content).hexdigest()
    reply = await request.app[realtime_key].load_everywhere(digest, content)
    await ModelStore(request.app[db_key]).put(digest, reply.format, content)
    return f"{reply.format} model sha256:{digest} ({len(content)} bytes)"


async def _publish(request: web.Request, name: str, version: str) -> Service:
    who = principal(request)
    require(who, Action.PUBLISH)
    check_name(name, "name")
    check_name(version, "version")
    form = await read_form(request)
    if form.model is None:
        raise InvalidInput("the 'model' file part is required", field="model")
    cache = request.app[services_key]
    existing = await cache.store.list(name)
    for other in existing:  # a name belongs to whoever published it (as for other services)
        require_manage(who, other.owner, f"web service '{name}'")
    if any(s.version == version for s in existing):  # 409 before loading the model
        raise Conflict(f"a web service named '{name}' with version '{version}' exists; use PATCH to update it")
    code = await _store_model(request, form.model)
    service = Service(
        name=name,
        version=version,
        runtime=RUNTIME,
        code=code,
        owner=who.username,
        description=form.description,
        operation_id=form.operation_id or DEFAULT_OPERATION_ID,
        inputs=INPUTS,
        outputs=OUTPUTS,
        created_at=time.time(),
    )
    await cache.store.create(service)
    await cache.changed(name, version)
    return service


@routes.post("/realtime-services/{name}")
async def publish_unversioned(request: web.Request) -> web.Response:
    service = await _publish(request, request.match_info["name"], str(uuid.uuid4()))
    return web.json_response(service.version, status=201)


@routes.post("/realtime-services/{name}/{version}")
async def publish(request: web.Request) -> web.Response:
    service = await _publish(request, request.match_info["name"], request.match_info["version"])
    return web.json_response(f"/api/{service.name}/{service.version}", status=201)


@routes.patch("/realtime-services/{name}/{version}")
async def patch(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], request.match_info["version"]
    cache = request.app[services_key]
    current = await cache.store.get(name, version)
    require_manage(principal(request), current.owner, f"web service '{name}' version '{version}'")
    if current.runtime != RUNTIME:
        raise InvalidInput(
            f"web service '{name}' version '{version}' is a {current.runtime} service, not a realtime one; "
            f"update it with PATCH /services/{name}/{version}"
        )
    form = await read_form(request)
    changes: dict[str, object] = {"revision": current.revision + 1}
    if form.model is not None:
        changes["code"] = await _store_model(request, form.model)
    if form.description is not None:
        changes["description"] = form.description
    if form.operation_id is not None:
        changes["operation_id"] = form.operation_id
    updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
    await cache.store.replace(updated)
    await cache.changed(name, version)
    old = model_hash(current)
    if form.model is not None and model_hash(updated) != old:
        # Requests already scoring on the old model finish on it; later ones score on the new one.
        await request.app[realtime_key].unload_everywhere(old)
    return web.json_response(f"/api/{name}/{version}")


async def forget_model(app: web.Application, service: Service) -> None:
    """After a realtime service version is deleted: drop its model everywhere unless another version uses it."""
    digest = model_hash(service)
    if await ModelStore(app[db_key]).delete_unused(digest):
        await app[realtime_key].unload_everywhere(digest)


_JSON_TYPES = {"numeric": "number", "integer": "integer", "character": "string", "logical": "boolean"}


def _column(column: rpb.ModelColumn) -> dict[str, Any]:
    items = {"type": _JSON_TYPES.get(column.type, "number")}
    return {"type": "array", "items": items, "description": column.type}


async def describe_columns(app: web.Application, service: Service, swagger: dict[str, Any]) -> None:
    """Fill a realtime service's swagger `inputData`/`outputData` with the model's columns (ONNX models)."""
    reply = await app[realtime_key].describe(model_hash(service))
    if reply.format != "onnx":
        return
    definitions = swagger["definitions"]
    data_in = definitions["InputParameters"]["properties"]["inputData"]
    inputs = list(reply.inputs)
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].shape[1] > 1:
        width = inputs[0].shape[1]
        data_in["description"] = f"data.frame: {width} {inputs[0].type} feature columns, in order (any names)"
        data_in["additionalProperties"] = _column(inputs[0])
    else:
        data_in["properties"] = {c.name: _column(c) for c in inputs}
        data_in["required"] = [c.name for c in inputs]
    data_out = definitions["OutputParameters"]["properties"]["outputData"]
    data_out["properties"] = {c.name: _column(c) for c in reply.outputs}


async def score_body(app: web.Application, service: Service, body: bytes) -> bytes:
    """The consume response body (WebServiceResult) of one scoring request to a realtime service."""
    outputs = await app[realtime_key].score(model_hash(service), body, app[settings_key].compute_timeout)
    return orjson.dumps(
        {
            "success": True,
            "errorMessage": "",
            "outputParameters": orjson.Fragment(outputs),
            "outputFiles": {},
            "consoleOutput": "",
            "changedFiles": [],
        }
    )


def scorer(app: web.Application) -> Callable[[Service, bytes], Awaitable[bytes]]:
    """score_body bound to `app` (batch executions score realtime records with it)."""
    return functools.partial(score_body, app)


async def consume_realtime(app: web.Application, service: Service, body: bytes) -> web.Response:
    """Score a realtime service (called by POST /api/{name}/{version} once inputs are checked)."""
    return web.Response(body=await score_body(app, service, body), content_type="application/json")
