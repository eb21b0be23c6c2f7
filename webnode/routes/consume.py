"""Service consumption: POST /api/{name}/{version} (the hot path)."""

from __future__ import annotations

import base64

import orjson
from aiohttp import web

from common import values
from common.errors import InvalidInput, PayloadTooLarge
from common.pb import compute_pb2 as pb
from webnode.auth.roles import Action, require
from webnode.keys import cluster_key, principal, services_key, settings_key
from webnode.middleware import parse_json
from webnode.routes.realtime import RUNTIME as REALTIME
from webnode.routes.realtime import consume_realtime
from webnode.store.services import Service

routes = web.RouteTableDef()


def check_inputs(service: Service, data: object) -> None:
    """400 naming the parameter for a missing, unknown or ill-typed input."""
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object of input parameters")
    declared = {p.name: p.type for p in service.inputs}
    for name in data:
        if name not in declared:
            raise InvalidInput(f"unknown input parameter '{name}'", field=name)
    for name, type_name in declared.items():
        if name not in data:
            raise InvalidInput(f"missing input parameter '{name}' ({type_name})", field=name)
        problem = values.check_json(type_name, data[name])
        if problem:
            raise InvalidInput(f"input parameter '{name}' ({type_name}): {problem}", field=name)


def result_body(result: pb.ExecutionResult) -> bytes:
    """The consume response envelope; outputs are spliced in as the shell encoded them."""
    files = {f.name: (base64.b64encode(f.content).decode() if f.present else None) for f in result.output_files}
    return orjson.dumps(
        {
            "success": result.success,
            "errorMessage": result.error_message,
            "outputParameters": orjson.Fragment(result.outputs_json or b"{}"),
            "outputFiles": files,
            "consoleOutput": result.console_output,
            "changedFiles": list(result.changed_files),
        }
    )


@routes.post("/api/{name}/{version}")
async def consume(request: web.Request) -> web.Response:
    require(principal(request), Action.CONSUME)
    app = request.app
    settings = app[settings_key]
    entry = await app[services_key].get(request.match_info["name"], request.match_info["version"])
    if request.content_length is not None and request.content_length > settings.max_body_size:
        raise PayloadTooLarge(f"the request body is larger than {settings.max_body_size} bytes")
    raw = await request.read()
    check_inputs(entry.service, parse_json(raw) if raw.strip() or entry.service.inputs else {})
    if entry.service.runtime == REALTIME:
        return await consume_realtime(app, entry.service, raw)
    result = await app[cluster_key].execute_service(entry.definition, raw or b"{}", settings.compute_timeout)
    return web.Response(body=result_body(result), content_type="application/json")
