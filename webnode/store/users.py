"""Local users (bcrypt hashes) in the central store."""

from __future__ import annotations

import time
from dataclasses import dataclass

from common.errors import Conflict
from webnode.store.db import Database, DuplicateKey


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: str


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, username: str) -> User | None:
        row = await self._db.fetchrow("SELECT username, password_hash, role FROM users WHERE username=$1", username)
        return User(row["username"], row["password_hash"], row["role"]) if row else None

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

    async def set_password(self, username: str, password_hash: str) -> None:
        await self._db.execute("UPDATE users SET password_hash=$2 WHERE username=$1", username, password_hash)

    async def list(self) -> list[User]:
        rows = await self._db.fetch("SELECT username, password_hash, role FROM users ORDER BY username")
        return [User(r["username"], r["password_hash"], r["role"]) for r in rows]
