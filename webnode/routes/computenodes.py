"""Centralized configuration: GET/POST/PUT/DELETE /computenodes (Owner only).

The list of entries (URIs, IPv4 ranges, DNS names) lives in the store; a change is
applied by this web node at once and broadcast so every other web node reloads it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import InvalidInput, NotFound, PayloadTooLarge
from webnode.auth.roles import Action, require
from webnode.compute import uris
from webnode.keys import cluster_key, principal
from webnode.middleware import parse_json

routes = web.RouteTableDef()
BODY_LIMIT = 1 << 20


async def _entries(request: web.Request) -> list[str]:
    """The normalised entries of an UpdateComputeNodesRequest body."""
    if request.content_length is not None and request.content_length > BODY_LIMIT:
        raise PayloadTooLarge(f"the request body is larger than {BODY_LIMIT} bytes")
    raw = await request.read()
    if len(raw) > BODY_LIMIT:
        raise PayloadTooLarge(f"the request body is larger than {BODY_LIMIT} bytes")
    body = parse_json(raw)
    if not isinstance(body, dict) or "entries" not in body:
        raise InvalidInput("the request body must be a JSON object with 'entries'", field="entries")
    return uris.unique(entry.text for entry in uris.parse_all(body["entries"]))


def _reply(entries: list[str]) -> web.Response:
    return web.json_response({"computeNodes": entries})


def _admin(request: web.Request) -> None:
    require(principal(request), Action.ADMIN)


@routes.get("/computenodes")
async def get_compute_nodes(request: web.Request) -> web.Response:
    _admin(request)
    return _reply(await request.app[cluster_key].entries())


@routes.post("/computenodes")
async def set_compute_nodes(request: web.Request) -> web.Response:
    _admin(request)
    entries = await _entries(request)
    await request.app[cluster_key].set_entries(entries)
    return _reply(entries)


@routes.put("/computenodes")
async def add_compute_nodes(request: web.Request) -> web.Response:
    _admin(request)
    added = await _entries(request)
    if not added:
        raise InvalidInput("'entries' must name at least one compute node", field="entries")
    cluster = request.app[cluster_key]
    entries = uris.unique([*await cluster.entries(), *added])
    await cluster.set_entries(entries)
    return _reply(entries)


@routes.delete("/computenodes")
async def remove_compute_nodes(request: web.Request) -> web.Response:
    _admin(request)
    removed = await _entries(request)
    if not removed:
        raise InvalidInput("'entries' must name at least one compute node", field="entries")
    cluster = request.app[cluster_key]
    current = await cluster.entries()
    missing: list[Any] = [entry for entry in removed if entry not in current]
    if missing:
        raise NotFound(f"not in the compute node list: {', '.join(missing)}", field="entries")
    entries = [entry for entry in current if entry not in removed]
    await cluster.set_entries(entries)
    return _reply(entries)
