"""Versioned schema migrations, applied in order at web node start (idempotent, one transaction).

One module per version in this package: `vNNNN_<what>.py` with `DESCRIPTION` and
`STATEMENTS` (SQL written once for both backends; `{blob}` becomes BYTEA on Postgres and
BLOB on SQLite). Never edit a released migration: add a new module.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re

from webnode.store.db import Database

logger = logging.getLogger(__name__)


def _discover() -> list[tuple[int, str, list[str]]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = re.match(r"^v(\d{4})_", info.name)
        if match:
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append((int(match.group(1)), str(module.DESCRIPTION), list(module.STATEMENTS)))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


MIGRATIONS: list[tuple[int, str, list[str]]] = _discover()

_LOCK_ID = 0x016E  # Postgres advisory lock held while migrating


async def migrate(db: Database) -> int:
    """Apply pending migrations; returns the schema version."""
    async with db.transaction() as tx:
        if tx.dialect == "postgres":
            # Web nodes starting together: one migrates, the others wait and find it done.
            await tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
        await tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description TEXT)")
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
