"""Versioned schema migrations, applied in order at web node start (idempotent, one transaction each).

Written once for both backends; `{blob}` becomes BYTEA (Postgres) or BLOB (SQLite).
Never edit a released migration: add a new one.
"""

from __future__ import annotations

import logging

from webnode.store.db import Database

logger = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "users, services, refresh tokens, key-value config",
        [
            """CREATE TABLE users (
                username TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL DEFAULT '',
                created_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE services (
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                revision INTEGER NOT NULL,
                runtime TEXT NOT NULL,
                code TEXT NOT NULL,
                init_code TEXT NOT NULL,
                description TEXT,
                operation_id TEXT,
                inputs TEXT NOT NULL,
                outputs TEXT NOT NULL,
                output_files TEXT NOT NULL,
                snapshot_id TEXT,
                owner TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (name, version)
            )""",
            """CREATE TABLE refresh_tokens (
                token_hash TEXT PRIMARY KEY,
                username TEXT NOT NULL,
                chain_id TEXT NOT NULL,
                chain_started DOUBLE PRECISION NOT NULL,
                last_used DOUBLE PRECISION NOT NULL,
                state TEXT NOT NULL,
                revoked_at DOUBLE PRECISION
            )""",
            "CREATE INDEX refresh_tokens_chain ON refresh_tokens (chain_id)",
            """CREATE TABLE config (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
        ],
    ),
]

_LOCK_ID = 0x016E  # Postgres advisory lock held while migrating


async def migrate(db: Database) -> int:
    """Apply pending migrations; returns the schema version."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description TEXT)")
    async with db.transaction() as tx:
        if tx.dialect == "postgres":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
        rows = await tx.fetch("SELECT version FROM schema_migrations")
        done = {int(r["version"]) for r in rows}
        blob = "BYTEA" if tx.dialect == "postgres" else "BLOB"
        for version, description, statements in MIGRATIONS:
            if version in done:
                continue
            logger.info("applying schema migration %d: %s", version, description)
            for statement in statements:
                await tx.execute(statement.replace("{blob}", blob))
            await tx.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)", version, description
            )
    return MIGRATIONS[-1][0]
