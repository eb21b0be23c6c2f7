"""GET /status (StatusResponse with real checks) and GET /healthz (liveness, no auth)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from common.errors import AppError
from common.pb import compute_pb2 as pb
from webnode.compute.cluster import NodeState
from webnode.keys import cluster_key, coordinator_key, db_key, settings_key
from webnode.settings import WebNodeSettings

routes = web.RouteTableDef()
_PREFIX = {pb.PYTHON: "python", pb.R: "r"}


def _component(status: str, details: dict[str, Any] | None = None, components: Any = None) -> dict[str, Any]:
    return {"statusCode": status, "components": components, "details": details or {}}


async def _probe(coro: Any) -> dict[str, Any]:
    try:
        details = await asyncio.wait_for(coro, 5)
        return _component("pass", details)
    except AppError as exc:
        return _component("fail", {"error": exc.message})
    except (TimeoutError, OSError) as exc:
        return _component("fail", {"error": str(exc) or "timed out"})


async def _node(state: NodeState) -> dict[str, Any]:
    try:
        status = await state.client.status(timeout=3)
    except AppError as exc:
        state.healthy = False
        return _component("fail", {"error": exc.message, "uri": state.client.uri})
    details: dict[str, Any] = {"apiVersion": status.api_version, "nodeId": status.node_id, "logPath": status.log_path}
    warn = False
    for pool in status.pools:
        prefix = _PREFIX.get(pool.runtime, "unknown")
        details[f"{prefix}MaxPoolSize"] = pool.max_size
        details[f"{prefix}CurrentPoolSize"] = pool.current_size
        details[f"{prefix}ActiveShellCount"] = pool.active
        details[f"{prefix}IdleShellCount"] = pool.idle
        details[f"{prefix}QueuedRequestCount"] = pool.queued
        details[f"{prefix}CanOpenShell"] = "True" if pool.can_open_shell else "False"
        if pool.unavailable_reason:
            details[f"{prefix}Unavailable"] = pool.unavailable_reason
            warn = True
    details["servicePools"] = [
        {
            "service": pool.service,
            "runtime": _PREFIX.get(pool.runtime, "unknown"),
            "initialPoolSize": pool.initial_size,
            "maxPoolSize": pool.max_size,
            "currentPoolSize": pool.current_size,
            "activeShellCount": pool.active,
            "idleShellCount": pool.idle,
            "queuedRequestCount": pool.queued,
        }
        for pool in status.service_pools
    ]
    details["loadedServices"] = status.loaded_services
    return _component("warn" if warn else "pass", details)


def _authentication(settings: WebNodeSettings) -> dict[str, Any]:
    """What authenticates callers, as configured (ML Server lists its providers the same way)."""
    external = settings.ldap_enabled or bool(settings.oidc_issuer)
    parts: dict[str, Any] = {
        "local": _component("pass", {"enabled": not external or settings.local_login_with_external, "signing": "ES256"})
    }
    if settings.ldap_enabled:
        parts["ldap"] = _component("pass", {"host": settings.ldap_host, "port": settings.ldap_port})
    if settings.oidc_issuer:
        parts["openIdConnect"] = _component(
            "pass", {"authority": settings.oidc_issuer, "audience": settings.oidc_audience}
        )
    return _component("pass", {}, parts)


def _worst(codes: list[str]) -> str:
    for code in ("fail", "warn"):
        if code in codes:
            return code
    return "pass"


@routes.get("/status")
async def status(request: web.Request) -> web.Response:
    app = request.app
    cluster = app[cluster_key]
    states = list(cluster.nodes.values())
    db_part, coord_part, *node_parts = await asyncio.gather(
        _probe(app[db_key].details()),
        _probe(app[coordinator_key].details()),
        *(_node(s) for s in states),
    )
    nodes = {s.client.uri: part for s, part in zip(states, node_parts, strict=True)}
    node_codes = [p["statusCode"] for p in nodes.values()]
    if not nodes or all(code == "fail" for code in node_codes):
        backends_code = "fail"
    elif "fail" in node_codes or "warn" in node_codes:
        backends_code = "warn"  # some nodes cannot serve; the others still do
    else:
        backends_code = "pass"
    backends = _component(backends_code, {} if nodes else {"error": "no compute nodes configured"}, nodes)
    auth = _authentication(app[settings_key])
    components = {"backends": backends, "authentication": auth, "database": db_part, "coordination": coord_part}
    overall = _worst([c["statusCode"] for c in components.values()])
    details = {"logPath": str(app[settings_key].data_dir.resolve() / "logs"), "version": "o16n 0.1.0"}
    return web.json_response(_component(overall, details, components))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
