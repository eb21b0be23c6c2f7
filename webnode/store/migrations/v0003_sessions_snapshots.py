"""Sessions (placement: which compute node holds each) and snapshots (zip content in chunks)."""

DESCRIPTION = "sessions, snapshots and snapshot content chunks"
STATEMENTS = [
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        runtime TEXT NOT NULL,
        node_uri TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX sessions_owner ON sessions (owner)",
    "CREATE INDEX sessions_node ON sessions (node_uri)",
    """CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        runtime TEXT NOT NULL,
        content_size BIGINT NOT NULL,
        chunk_count INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX snapshots_owner ON snapshots (owner)",
    """CREATE TABLE snapshot_chunks (
        snapshot_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data {blob} NOT NULL,
        PRIMARY KEY (snapshot_id, seq)
    )""",
]
