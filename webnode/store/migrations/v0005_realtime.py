"""Realtime model bytes, stored once per content hash."""

DESCRIPTION = "realtime model bytes by content hash"
STATEMENTS = [
    """CREATE TABLE realtime_models (
        model_hash TEXT PRIMARY KEY,
        format TEXT NOT NULL,
        size BIGINT NOT NULL,
        content {blob} NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
]
