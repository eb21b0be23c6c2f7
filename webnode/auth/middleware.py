"""Audit at the HTTP edge: every 401, 403 and 429 outside the login routes (they audit themselves),
and every successful change to the compute node configuration (an administrative change)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from webnode.auth.context import auditor_key
from webnode.auth.tokens import Principal
from webnode.keys import PRINCIPAL

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DENIED = {401: "unauthenticated", 403: "forbidden", 429: "throttled"}
_ADMIN_PREFIXES = ("/computenodes",)
_CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    outcome = _DENIED.get(response.status)
    if outcome is not None and not request.path.startswith("/login"):
        await _record(request, "denied", outcome)
    elif response.status < 400 and request.method in _CHANGES and request.path.startswith(_ADMIN_PREFIXES):
        await _record(request, "admin", "success")
    return response


async def _record(request: web.Request, action: str, outcome: str) -> None:
    principal = request.get(PRINCIPAL)
    actor = principal.username if isinstance(principal, Principal) else ""
    try:
        await request.app[auditor_key].request(
            request, actor=actor, action=action, outcome=outcome, target=f"{request.method} {request.path}"
        )
    except Exception as exc:  # an audit failure must not turn the response into a 500
        logger.error("could not write the audit log: %s", exc)
