"""Users in the central store: local users (bcrypt hashes) and users seen through LDAP or OIDC."""

from __future__ import annotations

import time
from dataclasses import dataclass

from common.errors import Conflict, NotFound
from webnode.store.db import Database, DuplicateKey

LOCAL = "local"


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: str
    source: str = LOCAL


_COLUMNS = "username, password_hash, role, source"


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, username: str) -> User | None:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE username=$1", username)
        return User(row["username"], row["password_hash"], row["role"], row["source"]) if row else None

    async def create(self, username: str, password_hash: str, role: str = "") -> None:
        try:
            await self._db.execute(
                "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)",
                username,
                password_hash,
                role,
                time.time(),
            )
        except DuplicateKey:
            raise Conflict(f"user '{username}' exists") from None

    async def remember_external(self, username: str, role: str, source: str) -> None:
        """Record a user authenticated by LDAP/OIDC with the role mapped at this login (no password)."""
        await self._db.execute(
            "INSERT INTO users (username, password_hash, role, created_at, source) VALUES ($1, '', $2, $3, $4) "
            "ON CONFLICT (username) DO UPDATE SET role = excluded.role, source = excluded.source",
            username,
            role,
            time.time(),
            source,
        )

    async def set_password(self, username: str, password_hash: str) -> None:
        await self._db.execute("UPDATE users SET password_hash=$2 WHERE username=$1", username, password_hash)

    async def set_role(self, username: str, role: str) -> None:
        if await self.get(username) is None:
            raise NotFound(f"no user '{username}'")
        await self._db.execute("UPDATE users SET role=$2 WHERE username=$1", username, role)

    async def remove(self, username: str) -> None:
        if await self.get(username) is None:
            raise NotFound(f"no user '{username}'")
        await self._db.execute("DELETE FROM users WHERE username=$1", username)

    async def list(self) -> list[User]:
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM users ORDER BY username")
        return [User(r["username"], r["password_hash"], r["role"], r["source"]) for r in rows]
