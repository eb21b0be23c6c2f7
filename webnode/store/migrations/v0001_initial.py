"""Users, services, refresh tokens, key-value config."""

DESCRIPTION = "users, services, refresh tokens, key-value config"
STATEMENTS = [
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
]
