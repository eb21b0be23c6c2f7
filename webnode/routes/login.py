"""POST /login, POST /login/refreshToken, DELETE /login/refreshToken."""

from __future__ import annotations

import logging

from aiohttp import web

from common.errors import InvalidInput, Unauthorized
from webnode.auth.passwords import verify_password
from webnode.auth.roles import OWNER
from webnode.keys import coordinator_key, db_key, settings_key, tokens_key
from webnode.schemas import LoginRequest, RenewTokenRequest, read_model, token_json
from webnode.store.tokens import RefreshTokenStore
from webnode.store.users import UserStore

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
REVOCATIONS = "revocations"
ADMIN = "admin"
_LIMIT = 64 * 1024


def _refresh_store(app: web.Application) -> RefreshTokenStore:
    settings = app[settings_key]
    return RefreshTokenStore(
        app[db_key],
        idle_lifetime=settings.refresh_token_idle_lifetime,
        max_lifetime=settings.refresh_token_max_lifetime,
    )


def _role(username: str, stored: str) -> str:
    return OWNER if username == ADMIN else stored


async def _tokens(app: web.Application, username: str, role: str, refresh: str, chain: str) -> web.Response:
    tokens = app[tokens_key]
    access, expires_on = tokens.issue(username, role, chain)
    return web.json_response(token_json(access, expires_on, tokens.lifetime, refresh))


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    body = await read_model(request, LoginRequest, limit=_LIMIT)
    user = await UserStore(request.app[db_key]).get(body.username)
    ok = await verify_password(body.password, user.password_hash if user else None)
    if not ok or user is None:
        logger.info("login failed for %r from %s", body.username, request.remote)
        raise Unauthorized("invalid user name or password")
    grant = await _refresh_store(request.app).issue(user.username)
    logger.info("login of %r from %s", user.username, request.remote)
    return await _tokens(request.app, user.username, _role(user.username, user.role), grant.token, grant.chain_id)


@routes.post("/login/refreshToken")
async def renew_token(request: web.Request) -> web.Response:
    body = await read_model(request, RenewTokenRequest, limit=_LIMIT)
    store = _refresh_store(request.app)
    grant, _chain = await store.rotate(body.refreshToken)
    user = await UserStore(request.app[db_key]).get(grant.username)
    if user is None:
        await store.revoke_chain(grant.chain_id)
        raise Unauthorized("the user no longer exists")
    return await _tokens(request.app, user.username, _role(user.username, user.role), grant.token, grant.chain_id)


@routes.delete("/login/refreshToken")
async def revoke_token(request: web.Request) -> web.Response:
    token = request.query.get("refreshToken", "")
    if not token:
        raise InvalidInput("the refreshToken query parameter is required", field="refreshToken")
    chain = await _refresh_store(request.app).revoke(token)
    request.app[tokens_key].revoke_chain(chain)
    await request.app[coordinator_key].publish(REVOCATIONS, chain)
    return web.json_response(
        {"token_type": "Bearer", "access_token": "", "expires_in": 0, "expires_on": 0, "refresh_token": ""}
    )
