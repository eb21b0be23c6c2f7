"""Bearer tokens of an external OIDC issuer (what ML Server called Azure Active Directory).

Keys come from the issuer's JWKS (a URL, fetched and cached, re-fetched at most every
`_REFETCH` seconds when a token names an unknown key; or a file). Verification pins the
algorithm to the one the key type allows (never `none` or HMAC), and checks iss, aud, exp.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from common.errors import Unauthorized, Unavailable

logger = logging.getLogger(__name__)
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
_REFETCH = 30.0


class OidcVerifier:
    def __init__(self, *, issuer: str, audience: str, jwks_url: str = "", jwks_file: str = "") -> None:
        self.issuer = issuer
        self.audience = audience
        self._url = jwks_url
        self._file = jwks_file
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    def is_ours(self, token: str) -> bool:
        """Does `token` claim to come from this issuer? (Unverified: only routes the token.)"""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.issuer

    async def verify(self, token: str) -> dict[str, Any]:
        """The verified claims of `token`; Unauthorized when anything is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid bearer token: {exc}") from None
        kid, algorithm = header.get("kid"), header.get("alg")
        if algorithm not in _ASYMMETRIC:
            raise Unauthorized(f"bearer tokens signed with {algorithm!r} are not accepted")
        key = await self._key(kid if isinstance(kid, str) else "")
        if key is None:
            raise Unauthorized("the bearer token was signed with a key the issuer does not publish")
        try:
            return dict(
                jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the bearer token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid bearer token: {exc}") from None

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and (not self._fetched or time.monotonic() - self._fetched > _REFETCH):
                self._keys = await self._load()
                self._fetched = time.monotonic()
        if kid:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _load(self) -> dict[str, jwt.PyJWK]:
        try:
            if self._file:
                raw = await asyncio.get_running_loop().run_in_executor(None, Path(self._file).read_text)
                document = json.loads(raw)
            else:
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self._url) as resp:
                    resp.raise_for_status()
                    document = await resp.json(content_type=None)
            keys: dict[str, jwt.PyJWK] = {}
            for entry in document.get("keys", []):
                try:
                    key = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # unsupported key types are skipped, not fatal
                if entry.get("kty") in ("RSA", "EC"):
                    keys[str(entry.get("kid", ""))] = key
            return keys
        except (OSError, ValueError, aiohttp.ClientError, AttributeError) as exc:
            logger.error("cannot load the OIDC issuer's JWKS: %s", exc)
            raise Unavailable("the identity provider's keys (JWKS) cannot be loaded") from None
