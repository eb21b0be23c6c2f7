"""Services management: /services, /services/{name}, /services/{name}/{version}."""

from __future__ import annotations

import dataclasses
import time
import uuid

from aiohttp import web

from common.errors import InvalidInput
from webnode.auth.roles import Action, can_manage, require, require_manage
from webnode.keys import principal, services_key, settings_key
from webnode.schemas import PublishRequest, check_name, read_model, service_json
from webnode.store.services import Parameter, Service

routes = web.RouteTableDef()


def _permission(request: web.Request, service: Service) -> str:
    return "read/write" if can_manage(principal(request), service.owner) else "read only"


def _params(defs: list[object] | None) -> tuple[Parameter, ...]:
    return tuple(Parameter(d.name, d.type) for d in defs or [])  # type: ignore[attr-defined]


async def _publish(request: web.Request, name: str, version: str) -> Service:
    who = principal(request)
    require(who, Action.PUBLISH)
    check_name(name, "name")
    check_name(version, "version")
    body = await read_model(request, PublishRequest, limit=request.app[settings_key].max_body_size)
    if not body.code or not body.code.strip():
        raise InvalidInput("code is required", field="code")
    if body.snapshotId:
        raise InvalidInput("snapshots are not supported yet", field="snapshotId")
    service = Service(
        name=name,
        version=version,
        runtime=body.runtimeType or "R",
        code=body.code,
        owner=who.username,
        init_code=body.initCode or "",
        description=body.description,
        operation_id=body.operationId,
        inputs=_params(body.inputParameterDefinitions),  # type: ignore[arg-type]
        outputs=_params(body.outputParameterDefinitions),  # type: ignore[arg-type]
        output_files=tuple(body.outputFileNames or ()),
        snapshot_id=None,
        created_at=time.time(),
    )
    cache = request.app[services_key]
    await cache.store.create(service)
    await cache.changed(name, version)
    return service


@routes.post("/services/{name}")
async def publish_unversioned(request: web.Request) -> web.Response:
    service = await _publish(request, request.match_info["name"], str(uuid.uuid4()))
    return web.json_response(service.version, status=201)


@routes.post("/services/{name}/{version}")
async def publish(request: web.Request) -> web.Response:
    service = await _publish(request, request.match_info["name"], request.match_info["version"])
    return web.json_response(f"/api/{service.name}/{service.version}", status=201)


@routes.get("/services")
async def list_services(request: web.Request) -> web.Response:
    require(principal(request), Action.LIST)
    services = await request.app[services_key].store.list()
    return web.json_response([service_json(s, _permission(request, s)) for s in services])


@routes.get("/services/{name}")
async def list_versions(request: web.Request) -> web.Response:
    require(principal(request), Action.LIST)
    services = await request.app[services_key].store.list(request.match_info["name"])
    return web.json_response([service_json(s, _permission(request, s)) for s in services])


@routes.get("/services/{name}/{version}")
async def get_service(request: web.Request) -> web.Response:
    require(principal(request), Action.LIST)
    service = await request.app[services_key].store.get(request.match_info["name"], request.match_info["version"])
    return web.json_response(service_json(service, _permission(request, service)))


@routes.patch("/services/{name}/{version}")
async def patch_service(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], request.match_info["version"]
    cache = request.app[services_key]
    current = await cache.store.get(name, version)
    require_manage(principal(request), current.owner, f"web service '{name}' version '{version}'")
    body = await read_model(request, PublishRequest, limit=request.app[settings_key].max_body_size)
    changes: dict[str, object] = {"revision": current.revision + 1}
    if body.code is not None:
        if not body.code.strip():
            raise InvalidInput("code must not be empty", field="code")
        changes["code"] = body.code
    if body.runtimeType is not None:
        changes["runtime"] = body.runtimeType
    if body.initCode is not None:
        changes["init_code"] = body.initCode
    if body.description is not None:
        changes["description"] = body.description
    if body.operationId is not None:
        changes["operation_id"] = body.operationId
    if body.inputParameterDefinitions is not None:
        changes["inputs"] = _params(body.inputParameterDefinitions)  # type: ignore[arg-type]
    if body.outputParameterDefinitions is not None:
        changes["outputs"] = _params(body.outputParameterDefinitions)  # type: ignore[arg-type]
    if body.outputFileNames is not None:
        changes["output_files"] = tuple(body.outputFileNames)
    updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
    await cache.store.replace(updated)
    await cache.changed(name, version)
    return web.json_response(f"/api/{name}/{version}")


@routes.delete("/services/{name}/{version}")
async def delete_service(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], request.match_info["version"]
    cache = request.app[services_key]
    current = await cache.store.get(name, version)
    require_manage(principal(request), current.owner, f"web service '{name}' version '{version}'")
    await cache.store.delete(name, version)
    await cache.changed(name, version)
    return web.json_response(f"deleted {name}/{version}")
