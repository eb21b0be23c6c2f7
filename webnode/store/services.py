"""Published service versions in the central store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.errors import Conflict, NotFound
from webnode.store.db import Database, DuplicateKey, Row


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str


@dataclass(frozen=True)
class Service:
    name: str
    version: str
    runtime: str  # "R" | "Python" | "Realtime"
    code: str
    owner: str
    revision: int = 1
    init_code: str = ""
    description: str | None = None
    operation_id: str | None = None
    inputs: tuple[Parameter, ...] = ()
    outputs: tuple[Parameter, ...] = ()
    output_files: tuple[str, ...] = ()
    snapshot_id: str | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        """Identifies this exact definition on compute nodes; changes with every patch."""
        return f"{self.name}/{self.version}@{self.revision}"


_COLUMNS = (
    "name, version, revision, runtime, code, init_code, description, operation_id, inputs, outputs, "
    "output_files, snapshot_id, owner, created_at"
)


def _params(raw: str) -> tuple[Parameter, ...]:
    return tuple(Parameter(p["name"], p["type"]) for p in orjson.loads(raw))


def _from_row(row: Row) -> Service:
    return Service(
        name=row["name"],
        version=row["version"],
        revision=int(row["revision"]),
        runtime=row["runtime"],
        code=row["code"],
        init_code=row["init_code"],
        description=row["description"],
        operation_id=row["operation_id"],
        inputs=_params(row["inputs"]),
        outputs=_params(row["outputs"]),
        output_files=tuple(orjson.loads(row["output_files"])),
        snapshot_id=row["snapshot_id"],
        owner=row["owner"],
        created_at=float(row["created_at"]),
    )


def _args(s: Service) -> list[Any]:
    return [
        s.name,
        s.version,
        s.revision,
        s.runtime,
        s.code,
        s.init_code,
        s.description,
        s.operation_id,
        orjson.dumps([p.__dict__ for p in s.inputs]).decode(),
        orjson.dumps([p.__dict__ for p in s.outputs]).decode(),
        orjson.dumps(list(s.output_files)).decode(),
        s.snapshot_id,
        s.owner,
        s.created_at,
    ]


class ServiceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, service: Service) -> None:
        try:
            await self._db.execute(
                f"INSERT INTO services ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                *_args(service),
            )
        except DuplicateKey:
            raise Conflict(
                f"a web service named '{service.name}' with version '{service.version}' exists; use PATCH to update it"
            ) from None

    async def replace(self, service: Service) -> None:
        """Store a patched definition (its revision already bumped)."""
        args = _args(service)
        await self._db.execute(
            "UPDATE services SET revision=$3, runtime=$4, code=$5, init_code=$6, description=$7, "
            "operation_id=$8, inputs=$9, outputs=$10, output_files=$11, snapshot_id=$12 "
            "WHERE name=$1 AND version=$2",
            *args[:12],
        )

    async def get(self, name: str, version: str) -> Service:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM services WHERE name=$1 AND version=$2", name, version)
        if row is None:
            raise NotFound(f"web service '{name}' version '{version}' not found")
        return _from_row(row)

    async def list(self, name: str | None = None) -> list[Service]:
        """Oldest first (Microsoft's client takes the last one as the latest version)."""
        if name is None:
            rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM services ORDER BY created_at, name, version")
        else:
            rows = await self._db.fetch(
                f"SELECT {_COLUMNS} FROM services WHERE name=$1 ORDER BY created_at, version", name
            )
        return [_from_row(r) for r in rows]

    async def delete(self, name: str, version: str) -> None:
        await self._db.execute("DELETE FROM services WHERE name=$1 AND version=$2", name, version)
