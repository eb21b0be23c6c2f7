"""GET /api/{name}/{version}/swagger.json: the per-service Swagger 2.0 document."""

from __future__ import annotations

from aiohttp import web

from webnode.auth.roles import Action, require
from webnode.keys import principal, services_key
from webnode.routes import realtime
from webnode.swagger import service_swagger

routes = web.RouteTableDef()


@routes.get("/api/{name}/{version}/swagger.json")
async def swagger_json(request: web.Request) -> web.Response:
    require(principal(request), Action.CONSUME)
    entry = await request.app[services_key].get(request.match_info["name"], request.match_info["version"])
    swagger = service_swagger(entry.service)
    if entry.service.runtime == realtime.RUNTIME:
        await realtime.describe_columns(request.app, entry.service, swagger)
    return web.json_response(swagger)
