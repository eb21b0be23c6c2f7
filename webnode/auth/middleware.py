"""Audit of denied requests: every 401, 403 and 429 outside the login routes (they audit themselves)."""

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


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    outcome = _DENIED.get(response.status)
    if outcome is not None and not request.path.startswith("/login"):
        principal = request.get(PRINCIPAL)
        actor = principal.username if isinstance(principal, Principal) else ""
        try:
            await request.app[auditor_key].request(
                request,
                actor=actor,
                action="denied",
                outcome=outcome,
                target=f"{request.method} {request.path}",
            )
        except Exception as exc:  # an audit failure must not turn a 401 into a 500
            logger.error("could not write the audit log: %s", exc)
    return response
