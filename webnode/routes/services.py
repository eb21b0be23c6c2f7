"""Services management: /services, /services/{name}, /services/{name}/{version}."""

from __future__ import annotations

import dataclasses
import time
import uuid

from aiohttp import web

from common.errors import Conflict, InvalidInput, NotFound
from webnode import service_snapshots
from webnode.auth.roles import Action, can_manage, require, require_manage
from webnode.keys import db_key, principal, services_key, settings_key
from webnode.routes import realtime
from webnode.routes.batch import batch_key
from webnode.schemas import ParameterDefinition, PublishRequest, check_name, read_model, service_json
from webnode.store.services import Parameter, Service
from webnode.store.snapshots import SnapshotStore

routes = web.RouteTableDef()
SERVICE_OWNER = "o16n-service:"  # owner of the snapshot copies services keep (no user has this name)
_SMALL = 64 * 1024  # snapshots up to this size are checked for emptiness


def _permission(request: web.Request, service: Service) -> str:
    return "read/write" if can_manage(principal(request), service.owner) else "read only"


def _params(defs: list[ParameterDefinition] | None) -> tuple[Parameter, ...]:
    return tuple(Parameter(d.name, d.type) for d in defs or [])


async def _publish(request: web.Request, name: str, version: str) -> Service:
    who = principal(request)
    require(who, Action.PUBLISH)
    check_name(name, "name")
    check_name(version, "version")
    body = await read_model(request, PublishRequest, limit=request.app[settings_key].max_body_size)
    if not body.code or not body.code.strip():
        raise InvalidInput("code is required", field="code")
    cache = request.app[services_key]
    existing = await cache.store.list(name)
    for other in existing:
        # A name belongs to whoever published it: others may not add versions unless they manage any service.
        require_manage(who, other.owner, f"web service '{name}'")
    if any(s.version == version for s in existing):
        raise Conflict(f"a web service named '{name}' with version '{version}' exists; use PATCH to update it")
    service = Service(
        name=name,
        version=version,
        runtime=body.runtimeType or "R",
        code=body.code,
        owner=who.username,
        init_code=body.initCode or "",
        description=body.description,
        operation_id=body.operationId,
        inputs=_params(body.inputParameterDefinitions),
        outputs=_params(body.outputParameterDefinitions),
        output_files=tuple(body.outputFileNames or ()),
        snapshot_id=None,
        created_at=time.time(),
    )
    if body.snapshotId:
        own = await _own_snapshot(request, body.snapshotId, name, version, service.runtime)
        service = dataclasses.replace(service, snapshot_id=own)
    await cache.store.create(service)
    await cache.changed(name, version)
    return service


async def _own_snapshot(request: web.Request, snapshot_id: str, name: str, version: str, runtime: str) -> str | None:
    """Copy the caller's snapshot for the service to own: the client deletes the original right after.

    None for the snapshot of an empty session (Microsoft's client sends one with every publish
    and with metadata-only redeploys): the service keeps the objects it has. Any size: compute
    nodes receive the copy in chunks into their snapshot cache (webnode/compute/cluster.py).
    """
    snapshots = SnapshotStore(request.app[db_key])
    try:
        record = await snapshots.get(snapshot_id, owner=principal(request).username)
    except NotFound:
        raise InvalidInput(f"snapshot '{snapshot_id}' not found", field="snapshotId") from None
    if record.content_size <= _SMALL and service_snapshots.is_empty(await snapshots.read_content(snapshot_id)):
        return None
    if record.runtime != runtime:
        raise InvalidInput(
            f"snapshot '{snapshot_id}' was taken in a {record.runtime} session; a {runtime} web service cannot load it",
            field="snapshotId",
        )
    copy = await snapshots.copy_snapshot(
        snapshot_id, str(uuid.uuid4()), owner=f"{SERVICE_OWNER}{name}/{version}", name=f"{name}/{version}"
    )
    return copy.id


async def _drop_snapshot(request: web.Request, service: Service) -> None:
    if service.snapshot_id:
        await SnapshotStore(request.app[db_key]).delete(service.snapshot_id)


@routes.post("/services/{name}")
async def publish_unversioned(request: web.Request) -> web.Response:
    """Publish with a new GUID as the version; the body is the consume path (JSON string)."""
    service = await _publish(request, request.match_info["name"], str(uuid.uuid4()))
    return web.json_response(f"/api/{service.name}/{service.version}", status=201)


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


def _changes(current: Service, body: PublishRequest) -> dict[str, object]:
    """The fields a PATCH body sets (absent or null keys leave the field as it is)."""
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
        changes["inputs"] = _params(body.inputParameterDefinitions)
    if body.outputParameterDefinitions is not None:
        changes["outputs"] = _params(body.outputParameterDefinitions)
    if body.outputFileNames is not None:
        changes["output_files"] = tuple(body.outputFileNames)
    return changes


@routes.patch("/services/{name}/{version}")
async def patch_service(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], request.match_info["version"]
    cache = request.app[services_key]
    current = await cache.store.get(name, version)
    require_manage(principal(request), current.owner, f"web service '{name}' version '{version}'")
    if current.runtime == "Realtime":
        raise InvalidInput(
            f"web service '{name}' version '{version}' is a realtime service; update it with "
            f"PATCH /realtime-services/{name}/{version} (multipart: model, description, operationId)"
        )
    body = await read_model(request, PublishRequest, limit=request.app[settings_key].max_body_size)
    changes = _changes(current, body)
    if body.snapshotId:
        own = await _own_snapshot(request, body.snapshotId, name, version, str(changes.get("runtime", current.runtime)))
        if own is not None:
            changes["snapshot_id"] = own
    updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
    await cache.store.replace(updated)
    await cache.changed(name, version)
    if updated.snapshot_id != current.snapshot_id:
        await _drop_snapshot(request, current)
    return web.json_response(f"/api/{name}/{version}")


@routes.delete("/services/{name}/{version}")
async def delete_service(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], request.match_info["version"]
    cache = request.app[services_key]
    current = await cache.store.get(name, version)
    require_manage(principal(request), current.owner, f"web service '{name}' version '{version}'")
    await cache.store.delete(name, version)
    await cache.changed(name, version)
    await _drop_snapshot(request, current)
    runner = request.app[batch_key]
    for execution_id in await runner.store.delete_service(name, version):
        await runner.cancel(execution_id)
    if current.runtime == realtime.RUNTIME:
        await realtime.forget_model(request.app, current)
    return web.json_response(f"deleted {name}/{version}")
