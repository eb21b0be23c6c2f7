"""Who is calling: a bearer token is ours (ES256, verified locally) or the OIDC issuer's."""

from __future__ import annotations

import collections
import time

from common.errors import Forbidden, Unauthorized
from webnode.auth.oidc import OidcVerifier
from webnode.auth.roles import RoleMapping
from webnode.auth.tokens import Principal, TokenService
from webnode.store.config import ConfigStore

_CACHE_SIZE = 10_000
_RELOAD_EVERY = 1.0  # at most one key reload per second for tokens naming an unknown key


class Authenticator:
    def __init__(
        self,
        tokens: TokenService,
        config: ConfigStore,
        mapping: RoleMapping,
        oidc: OidcVerifier | None = None,
        oidc_username_claim: str = "preferred_username",
        oidc_group_claims: tuple[str, ...] = ("groups", "roles"),
    ) -> None:
        self._tokens = tokens
        self._config = config
        self._mapping = mapping
        self._oidc = oidc
        self._username_claim = oidc_username_claim
        self._group_claims = oidc_group_claims
        self._reloaded = 0.0
        self._external: collections.OrderedDict[str, tuple[Principal, float]] = collections.OrderedDict()

    async def authenticate(self, token: str) -> Principal:
        try:
            return self._tokens.verify(token)
        except Unauthorized:
            if self._oidc is not None and self._oidc.is_ours(token):
                return await self._external_principal(token)
            if not self._tokens.knows_kid(token) and time.monotonic() - self._reloaded > _RELOAD_EVERY:
                # Another node or `o16n admin key rotate` may have added a key this node has not read yet.
                self._reloaded = time.monotonic()
                if await self._tokens.reload(self._config):
                    return self._tokens.verify(token)
            raise

    async def _external_principal(self, token: str) -> Principal:
        assert self._oidc is not None
        cached = self._external.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        claims = await self._oidc.verify(token)
        username = str(claims.get(self._username_claim) or claims["sub"])
        groups: list[str] = []
        for claim in self._group_claims:
            value = claims.get(claim)
            if isinstance(value, str):
                groups.append(value)
            elif isinstance(value, list):
                groups.extend(str(v) for v in value)
        role = self._mapping.resolve(groups)
        if role is None:
            raise Forbidden(f"'{username}' has no role on this server (no mapped group)")
        principal = Principal(username=username, role=role, chain_id="", token_id=str(claims.get("jti", "")))
        self._external[token] = (principal, float(claims["exp"]))
        if len(self._external) > _CACHE_SIZE:
            self._external.popitem(last=False)
        return principal
