"""Batch executions of web services and their records (results kept until the execution is deleted)."""

DESCRIPTION = "batch executions and their records"
STATEMENTS = [
    """CREATE TABLE batch_executions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        total INTEGER NOT NULL,
        parallel_count INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        lease_owner TEXT NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX batch_executions_service ON batch_executions (name, version)",
    "CREATE INDEX batch_executions_lease ON batch_executions (state, lease_until)",
    """CREATE TABLE batch_items (
        execution_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        inputs TEXT NOT NULL,
        done INTEGER NOT NULL,
        result TEXT,
        PRIMARY KEY (execution_id, idx)
    )""",
]
