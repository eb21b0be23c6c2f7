"""The web node's authentication resources (a cleanup_ctx) and their app keys.

Revocations and key rotations reach a web node three ways: the coordination channel
(immediate), a re-read of the store every O16N_AUTH_SYNC_INTERVAL seconds (covers the
command line, which may not reach the coordination backend, and lost messages), and a
key reload when a token names a key this node has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from webnode.auth.audit import Auditor
from webnode.auth.authenticator import Authenticator
from webnode.auth.channels import KEYS, REVOCATIONS
from webnode.auth.ldap import LdapAuthenticator
from webnode.auth.logins import PasswordLogins
from webnode.auth.oidc import OidcVerifier
from webnode.auth.passwords import dummy_hash
from webnode.auth.roles import RoleMapping
from webnode.auth.throttle import LoginThrottle
from webnode.auth.tokens import TokenService
from webnode.coord.base import RESYNC
from webnode.keys import coordinator_key, db_key, settings_key, tokens_key
from webnode.settings import WebNodeSettings
from webnode.store.audit import AuditStore
from webnode.store.config import ConfigStore
from webnode.store.tokens import RefreshTokenStore
from webnode.store.users import UserStore

logger = logging.getLogger(__name__)
__all__ = ["KEYS", "REVOCATIONS", "auditor_key", "auth_ctx", "authenticator_key", "logins_key", "refresh_key"]

authenticator_key = web.AppKey("authenticator", Authenticator)
auditor_key = web.AppKey("auditor", Auditor)
logins_key = web.AppKey("logins", PasswordLogins)
refresh_key = web.AppKey("refresh_tokens", RefreshTokenStore)


def role_mapping(settings: WebNodeSettings) -> RoleMapping:
    return RoleMapping.from_lists(
        settings.role_owner_groups, settings.role_contributor_groups, settings.role_reader_groups
    )


def refresh_store(app: web.Application) -> RefreshTokenStore:
    return app[refresh_key]


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    db = app[db_key]
    config = ConfigStore(db)
    tokens = TokenService(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        lifetime=settings.access_token_lifetime,
        key_file=settings.signing_key_file,
    )
    await tokens.load_keys(config)
    app[tokens_key] = tokens
    refresh = RefreshTokenStore(
        db, idle_lifetime=settings.refresh_token_idle_lifetime, max_lifetime=settings.refresh_token_max_lifetime
    )
    app[refresh_key] = refresh
    mapping = role_mapping(settings)
    oidc = None
    if settings.oidc_issuer:
        oidc = OidcVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            jwks_file=settings.oidc_jwks_file,
        )
    app[authenticator_key] = Authenticator(
        tokens, config, mapping, oidc, settings.oidc_username_claim, tuple(settings.oidc_group_claims)
    )
    app[auditor_key] = Auditor(AuditStore(db))
    coordinator = app[coordinator_key]
    throttle = LoginThrottle(
        coordinator,
        per_user=settings.login_max_failures_per_user,
        per_address=settings.login_max_failures_per_address,
        window=settings.login_throttle_window,
    )
    external = settings.ldap_enabled or bool(settings.oidc_issuer)
    app[logins_key] = PasswordLogins(
        UserStore(db),
        mapping,
        throttle,
        bcrypt_rounds=settings.bcrypt_rounds,
        ldap=LdapAuthenticator(settings) if settings.ldap_enabled else None,
        local_enabled=not external or settings.local_login_with_external,
    )
    await dummy_hash(settings.bcrypt_rounds)
    lookback = settings.access_token_lifetime + 60

    async def resync() -> None:
        for chain in await refresh.revoked_chains_since(time.time() - lookback):
            tokens.revoke_chain(chain)
        if await tokens.reload(config):
            logger.info("signing keys reloaded; signing with key %s", tokens.signing_kid)

    await resync()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def resync_soon() -> None:
        task = loop.create_task(resync())
        pending.add(task)
        task.add_done_callback(pending.discard)

    def on_revocation(message: str) -> None:
        if message == RESYNC:
            resync_soon()
        else:
            tokens.revoke_chain(message)

    coordinator.subscribe(REVOCATIONS, on_revocation)
    coordinator.subscribe(KEYS, lambda _message: resync_soon())

    async def sync_forever() -> None:
        while True:
            await asyncio.sleep(settings.auth_sync_interval)
            try:
                await resync()
            except Exception as exc:  # the store may be briefly down; try again next time
                logger.warning("could not re-read revocations and keys: %s", exc)

    task = loop.create_task(sync_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
