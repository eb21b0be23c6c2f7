"""Access tokens: ES256 JWTs signed with a key shared by all web nodes through the central store.

The first web node generates the signing key and stores it (first writer wins), so web
nodes never need a certificate copied between them; alternatively every web node reads the
same key file (O16N_SIGNING_KEY_FILE). Rotation (`o16n admin key rotate`) adds a new key
that signs from then on; older keys keep verifying until every token they signed expired.
Verification pins ES256, checks `iss`, `aud`, `exp`, the key id, and the revocation set of
refresh chains; results are
cached per token so the hot path does no crypto after the first request with a token.
"""

from __future__ import annotations

import collections
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.errors import Unauthorized
from webnode.store.config import ConfigStore

ALGORITHM = "ES256"
SIGNING_KEYS = "signing_keys"
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: the subject of a verified token."""

    username: str
    role: str
    chain_id: str
    token_id: str


def _new_key() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {"kid": uuid.uuid4().hex, "private_pem": pem, "created": time.time()}


def load_key_file(path: str) -> tuple[str, Any]:
    """(kid, private key) from a PEM file; the kid is derived from the public key."""
    try:
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"O16N_SIGNING_KEY_FILE {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"O16N_SIGNING_KEY_FILE {path}: an EC P-256 private key is required for ES256")
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "file-" + hashlib.sha256(public).hexdigest()[:16], key


def rotated(keys: list[dict[str, Any]], lifetime: float) -> list[dict[str, Any]]:
    """`keys` plus a new signing key; keys retired longer than a token lifetime ago are dropped."""
    now = time.time()
    kept = []
    for entry in keys:
        entry = dict(entry)
        entry.setdefault("retired", now)
        if now - float(entry["retired"]) <= lifetime + 60:
            kept.append(entry)
    return [*kept, _new_key()]


class TokenService:
    def __init__(self, *, issuer: str, audience: str, lifetime: int, key_file: str = "") -> None:
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self._file_key = load_key_file(key_file) if key_file else None
        self._installed: list[dict[str, Any]] = []
        self._signing: tuple[str, Any] | None = None
        self._verifying: dict[str, Any] = {}
        self._cache: collections.OrderedDict[str, tuple[Principal, float]] = collections.OrderedDict()
        self._revoked: dict[str, float] = {}  # chain id -> when the entry may be forgotten

    async def load_keys(self, config: ConfigStore) -> None:
        keys = await config.get(SIGNING_KEYS)
        if not keys:
            keys = await config.set_if_absent(SIGNING_KEYS, [_new_key()])
        self._install(keys)

    async def rotate_keys(self, config: ConfigStore) -> str:
        """A new key signs from now on; older keys keep verifying. Returns the new kid."""
        keys = rotated((await config.get(SIGNING_KEYS)) or [], self.lifetime)
        await config.set(SIGNING_KEYS, keys)
        self._install(keys)
        return str(keys[-1]["kid"])

    async def reload(self, config: ConfigStore) -> bool:
        """Re-read the keys (another node or the CLI rotated them); True when they changed."""
        keys = await config.get(SIGNING_KEYS)
        if not keys or keys == self._installed:
            return False
        self._install(keys)
        return True

    @property
    def signing_kid(self) -> str:
        assert self._signing is not None, "load_keys() first"
        return self._signing[0]

    def knows_kid(self, token: str) -> bool:
        try:
            return jwt.get_unverified_header(token).get("kid") in self._verifying
        except jwt.PyJWTError:
            return True  # malformed: reloading keys would not help

    def _install(self, keys: list[dict[str, Any]]) -> None:
        verifying = {}
        for entry in keys:
            private = serialization.load_pem_private_key(entry["private_pem"].encode(), password=None)
            verifying[entry["kid"]] = private.public_key()
        newest = max(keys, key=lambda k: k["created"])
        self._signing = (
            newest["kid"],
            serialization.load_pem_private_key(newest["private_pem"].encode(), password=None),
        )
        if self._file_key is not None:
            kid, key = self._file_key
            verifying[kid] = key.public_key()
            self._signing = (kid, key)
        if set(self._verifying) - set(verifying):
            self._cache.clear()  # a key was dropped: tokens it signed must fail verification again
        self._verifying = verifying
        self._installed = keys

    def issue(self, username: str, role: str, chain_id: str) -> tuple[str, int]:
        """A signed access token and its expiry (epoch seconds)."""
        assert self._signing is not None, "load_keys() first"
        kid, key = self._signing
        now = int(time.time())
        expires = now + self.lifetime
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": username,
            "iat": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "sid": chain_id,
            "role": role,
        }
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid}), expires

    def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires = cached
            if expires > now and principal.chain_id not in self._revoked:
                return principal
            self._cache.pop(token, None)
            raise Unauthorized("the access token has expired or was revoked")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._verifying.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthorized("the access token was not signed by this server")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid access token: {exc}") from None
        principal = Principal(
            username=str(claims["sub"]),
            role=str(claims.get("role", "")),
            chain_id=str(claims.get("sid", "")),
            token_id=str(claims["jti"]),
        )
        if principal.chain_id in self._revoked:
            raise Unauthorized("the access token was revoked")
        self._cache[token] = (principal, float(claims["exp"]))
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def revoke_chain(self, chain_id: str) -> None:
        """Access tokens of this login stop working (kept until they would have expired anyway)."""
        now = time.time()
        self._revoked[chain_id] = now + self.lifetime + 60
        for chain, until in list(self._revoked.items()):
            if until < now:
                del self._revoked[chain]
