"""Dedicated pools per service version: POST|GET|DELETE /services/{name}/{version}/pool."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from common.errors import InvalidInput, NotFound
from webnode.auth.roles import Action, require, require_manage
from webnode.compute.pools import PoolSync
from webnode.keys import cluster_key, coordinator_key, db_key, principal, services_key, settings_key
from webnode.middleware import parse_json
from webnode.store.config import ConfigStore
from webnode.store.pools import ServicePool, ServicePoolStore
from webnode.store.services import Service

routes = web.RouteTableDef()
DEPLOYMENT_ID = "deployment_id"  # config key: tells this deployment's pools on a compute node apart
pool_sync_key = web.AppKey("pool_sync", PoolSync)


async def pools_ctx(app: web.Application) -> AsyncIterator[None]:
    owner = await ConfigStore(app[db_key]).set_if_absent(DEPLOYMENT_ID, uuid.uuid4().hex)
    sync = PoolSync(
        ServicePoolStore(app[db_key]),
        app[services_key],
        app[cluster_key],
        app[coordinator_key],
        interval=app[settings_key].health_interval,
        owner=str(owner),
    )
    await sync.start()
    app[pool_sync_key] = sync
    yield
    await sync.close()


async def _managed_service(request: web.Request) -> Service:
    name, version = request.match_info["name"], request.match_info["version"]
    service = (await request.app[services_key].get(name, version)).service
    require_manage(principal(request), service.owner, f"web service '{name}' version '{version}'")
    return service


def _size(body: dict[str, object], field: str, default: int, limit: int) -> int:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer", field=field)
    if not 0 <= value <= limit:
        raise InvalidInput(f"{field} must be between 0 and {limit}", field=field)
    return value


@routes.post("/services/{name}/{version}/pool")
async def create_or_update_pool(request: web.Request) -> web.Response:
    service = await _managed_service(request)
    body = parse_json(await request.read())
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object with InitialPoolSize and MaxPoolSize")
    unknown = sorted(set(body) - {"InitialPoolSize", "MaxPoolSize"})
    if unknown:
        raise InvalidInput(f"unknown field '{unknown[0]}'", field=unknown[0])
    limit = request.app[settings_key].service_pool_size_limit
    initial = _size(body, "InitialPoolSize", 1, limit)
    maximum = _size(body, "MaxPoolSize", max(initial, 1), limit)
    if maximum < 1:
        raise InvalidInput("MaxPoolSize must be at least 1", field="MaxPoolSize")
    if initial > maximum:
        raise InvalidInput(
            f"InitialPoolSize ({initial}) must not be greater than MaxPoolSize ({maximum})", field="InitialPoolSize"
        )
    sync = request.app[pool_sync_key]
    await sync.store.put(ServicePool(service.name, service.version, service.created_at, initial, maximum))
    await sync.changed()
    return web.json_response(f"dedicated pool of {service.name}/{service.version}: initial {initial}, max {maximum}")


@routes.get("/services/{name}/{version}/pool")
async def pool_status(request: web.Request) -> web.Response:
    require(principal(request), Action.LIST)
    name, version = request.match_info["name"], request.match_info["version"]
    await request.app[services_key].get(name, version)  # 404 for an unknown service
    return web.json_response(await request.app[pool_sync_key].status(name, version))


@routes.delete("/services/{name}/{version}/pool")
async def delete_pool(request: web.Request) -> web.Response:
    service = await _managed_service(request)
    sync = request.app[pool_sync_key]
    if not await sync.store.delete(service.name, service.version):
        raise NotFound(f"web service '{service.name}' version '{service.version}' has no dedicated pool")
    await sync.changed()
    return web.json_response(f"deleted the dedicated pool of {service.name}/{service.version}")
