"""Refresh tokens: stored as SHA-256 hashes, rotated on use, revoked as a chain."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from common.errors import Unauthorized
from webnode.store.db import Database

ACTIVE, ROTATED, REVOKED = "active", "rotated", "revoked"
_INVALID = "invalid or expired refresh token"


class RefreshTokenReused(Unauthorized):
    """A rotated refresh token was presented again: its whole chain is now revoked."""

    def __init__(self, chain_id: str, username: str) -> None:
        super().__init__(_INVALID)
        self.chain_id = chain_id
        self.username = username


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class RefreshGrant:
    token: str
    username: str
    chain_id: str


class RefreshTokenStore:
    def __init__(self, db: Database, *, idle_lifetime: float, max_lifetime: float) -> None:
        self._db = db
        self._idle = idle_lifetime
        self._max = max_lifetime

    async def issue(
        self, username: str, chain_id: str | None = None, chain_started: float | None = None
    ) -> RefreshGrant:
        token = secrets.token_urlsafe(32)
        now = time.time()
        chain = chain_id or str(uuid.uuid4())
        await self._db.execute(
            "INSERT INTO refresh_tokens (token_hash, username, chain_id, chain_started, last_used, state) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            _digest(token),
            username,
            chain,
            chain_started or now,
            now,
            ACTIVE,
        )
        return RefreshGrant(token, username, chain)

    async def rotate(self, token: str) -> tuple[RefreshGrant, str]:
        """Spend `token` for a new one in the same chain; returns (new grant, old chain id).

        Unknown, revoked, idle too long or past the chain's end -> Unauthorized; a token
        that was already rotated -> RefreshTokenReused after revoking its whole chain.
        """
        digest = _digest(token)
        row = await self._db.fetchrow(
            "SELECT username, chain_id, chain_started, last_used, state FROM refresh_tokens WHERE token_hash=$1",
            digest,
        )
        if row is None:
            raise Unauthorized(_INVALID)
        now = time.time()
        if row["state"] == ROTATED:
            # A spent token came back: someone holds a copy. End the whole chain.
            await self.revoke_chain(row["chain_id"])
            raise RefreshTokenReused(row["chain_id"], row["username"])
        if row["state"] != ACTIVE or now - row["last_used"] > self._idle or now - row["chain_started"] > self._max:
            raise Unauthorized(_INVALID)
        spent = await self._db.fetchrow(
            "UPDATE refresh_tokens SET state=$2 WHERE token_hash=$1 AND state=$3 RETURNING token_hash",
            digest,
            ROTATED,
            ACTIVE,
        )
        if spent is None:  # a concurrent request rotated it first: same as presenting it twice
            await self.revoke_chain(row["chain_id"])
            raise RefreshTokenReused(row["chain_id"], row["username"])
        grant = await self.issue(row["username"], row["chain_id"], float(row["chain_started"]))
        return grant, row["chain_id"]

    async def revoke(self, token: str) -> str:
        """Revoke the chain of `token`; returns the chain id."""
        row = await self._db.fetchrow("SELECT chain_id, state FROM refresh_tokens WHERE token_hash=$1", _digest(token))
        if row is None or row["state"] == REVOKED:
            raise Unauthorized(_INVALID)
        await self.revoke_chain(row["chain_id"])
        return str(row["chain_id"])

    async def username_of(self, token: str) -> str:
        row = await self._db.fetchrow("SELECT username FROM refresh_tokens WHERE token_hash=$1", _digest(token))
        return str(row["username"]) if row else ""

    async def revoke_user(self, username: str) -> list[str]:
        """Revoke every live chain of `username` (password change, removal); returns their ids."""
        rows = await self._db.fetch(
            "SELECT DISTINCT chain_id FROM refresh_tokens WHERE username=$1 AND state<>$2", username, REVOKED
        )
        chains = [str(r["chain_id"]) for r in rows]
        for chain in chains:
            await self.revoke_chain(chain)
        return chains

    async def revoke_chain(self, chain_id: str) -> None:
        await self._db.execute(
            "UPDATE refresh_tokens SET state=$2, revoked_at=$3 WHERE chain_id=$1", chain_id, REVOKED, time.time()
        )

    async def revoked_chains_since(self, since: float) -> list[str]:
        rows = await self._db.fetch(
            "SELECT DISTINCT chain_id FROM refresh_tokens WHERE state=$1 AND revoked_at >= $2", REVOKED, since
        )
        return [r["chain_id"] for r in rows]
