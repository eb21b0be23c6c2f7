"""POST /login, POST /login/refreshToken, DELETE /login/refreshToken."""

from __future__ import annotations

from aiohttp import web

from common.errors import AppError, Forbidden, InvalidInput, TooManyRequests, Unauthorized
from webnode.auth.context import REVOCATIONS, auditor_key, logins_key, refresh_store
from webnode.auth.logins import ADMIN, NoRole
from webnode.keys import coordinator_key, db_key, tokens_key
from webnode.schemas import LoginRequest, RenewTokenRequest, read_model, token_json
from webnode.store.tokens import RefreshTokenReused
from webnode.store.users import UserStore

__all__ = ["ADMIN", "REVOCATIONS", "routes"]
routes = web.RouteTableDef()
_LIMIT = 64 * 1024


def _outcome(error: AppError) -> str:
    if isinstance(error, TooManyRequests):
        return "throttled"
    if isinstance(error, NoRole):
        return "denied"
    return "failure"


async def _tokens(app: web.Application, username: str, role: str, refresh: str, chain: str) -> web.Response:
    tokens = app[tokens_key]
    access, expires_on = tokens.issue(username, role, chain)
    return web.json_response(token_json(access, expires_on, tokens.lifetime, refresh))


async def _revoke(app: web.Application, chain: str) -> None:
    app[tokens_key].revoke_chain(chain)
    await app[coordinator_key].publish(REVOCATIONS, chain)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    body = await read_model(request, LoginRequest, limit=_LIMIT)
    audit = request.app[auditor_key]
    try:
        identity = await request.app[logins_key].login(body.username, body.password, request.remote or "")
    except AppError as exc:
        await audit.request(request, actor=body.username, action="login", outcome=_outcome(exc), detail=exc.message)
        if isinstance(exc, NoRole):
            raise Forbidden(exc.message) from None
        raise
    grant = await refresh_store(request.app).issue(identity.username)
    await audit.request(
        request, actor=identity.username, action="login", outcome="success", detail=f"{identity.source} {identity.role}"
    )
    return await _tokens(request.app, identity.username, identity.role, grant.token, grant.chain_id)


@routes.post("/login/refreshToken")
async def renew_token(request: web.Request) -> web.Response:
    body = await read_model(request, RenewTokenRequest, limit=_LIMIT)
    audit = request.app[auditor_key]
    store = refresh_store(request.app)
    try:
        grant, _chain = await store.rotate(body.refreshToken)
    except RefreshTokenReused as exc:
        await _revoke(request.app, exc.chain_id)
        await audit.request(
            request, actor=exc.username, action="refresh", outcome="theft", detail="rotated token reused; chain revoked"
        )
        raise Unauthorized(exc.message) from None  # the same answer as for any invalid token
    except Unauthorized as exc:
        await audit.request(request, actor="", action="refresh", outcome="failure", detail=exc.message)
        raise
    user = await UserStore(request.app[db_key]).get(grant.username)
    role = await request.app[logins_key].refreshed_role(user.username, user.role, user.source) if user else None
    if user is None or role is None:
        await store.revoke_chain(grant.chain_id)
        await _revoke(request.app, grant.chain_id)
        await audit.request(
            request, actor=grant.username, action="refresh", outcome="denied", detail="no such user or no role"
        )
        raise Unauthorized("the user no longer exists or has no role")
    await audit.request(request, actor=user.username, action="refresh", outcome="success")
    return await _tokens(request.app, user.username, role, grant.token, grant.chain_id)


@routes.delete("/login/refreshToken")
async def revoke_token(request: web.Request) -> web.Response:
    token = request.query.get("refreshToken", "")
    if not token:
        raise InvalidInput("the refreshToken query parameter is required", field="refreshToken")
    store = refresh_store(request.app)
    audit = request.app[auditor_key]
    try:
        chain = await store.revoke(token)
    except Unauthorized as exc:
        await audit.request(request, actor="", action="revoke", outcome="failure", detail=exc.message)
        raise
    await _revoke(request.app, chain)
    await audit.request(request, actor=await store.username_of(token), action="revoke", outcome="success")
    return web.json_response(
        {"token_type": "Bearer", "access_token": "", "expires_in": 0, "expires_on": 0, "refresh_token": ""}
    )
