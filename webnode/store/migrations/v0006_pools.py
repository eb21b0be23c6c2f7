"""Dedicated pools per service version (POST /services/{name}/{version}/pool)."""

DESCRIPTION = "dedicated service pools"
STATEMENTS = [
    """CREATE TABLE service_pools (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        service_created_at DOUBLE PRECISION NOT NULL,
        initial_size INTEGER NOT NULL,
        max_size INTEGER NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (name, version)
    )""",
]
