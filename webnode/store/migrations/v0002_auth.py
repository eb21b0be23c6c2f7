"""Audit log; where a user comes from (local or an external directory)."""

DESCRIPTION = "audit log, user source"
STATEMENTS = [
    """CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        address TEXT NOT NULL,
        request_id TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX audit_log_at ON audit_log (at)",
    "ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local'",
    "CREATE INDEX refresh_tokens_user ON refresh_tokens (username)",
]
