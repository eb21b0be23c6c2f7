"""Audit: every login, refresh, revocation, denied request and administrative change.

Each event is a row in the store's audit log and one JSON line on the `o16n.audit` logger
with the request's correlation id. Callers pass names and outcomes, never secrets.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson

from webnode.store.audit import AuditEntry, AuditStore

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("o16n.audit")
REQUEST_ID = "o16n.request_id"  # set on each request by the request-id middleware


class Auditor:
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def record(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        target: str = "",
        address: str = "",
        request_id: str = "",
        detail: str = "",
    ) -> None:
        entry = AuditEntry(time.time(), actor, action, target, outcome, address, request_id, detail)
        logger.info(
            "%s",
            orjson.dumps(
                {
                    "CorrelationId": request_id,
                    "Subject": {
                        "Operation": action,
                        "UserPrincipalName": actor,
                        "RemoteIpAddress": address,
                        "Target": target,
                    },
                    "Outcome": outcome,
                    "Detail": detail,
                }
            ).decode(),
        )
        await self._store.record(entry)

    async def request(
        self, request: web.Request, *, actor: str, action: str, outcome: str, target: str = "", detail: str = ""
    ) -> None:
        """Record an event of an HTTP request (its address and correlation id)."""
        await self.record(
            actor=actor,
            action=action,
            outcome=outcome,
            target=target,
            address=request.remote or "",
            request_id=str(request.get(REQUEST_ID, "")),
            detail=detail,
        )
