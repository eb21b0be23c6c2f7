"""Dedicated pools: one ShellPool per service version that has one, its shells preloaded.

A dedicated pool is identified by the service's "<name>/<version>" and holds the current
definition (its key changes with every patch). Each new shell loads that definition (the
initCode runs) before it counts as idle; a shell still holding an older revision is
reloaded by the registry when it is leased. The web nodes decide which pools exist
(webnode/compute/pools.py); this node only applies what it is told.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import InvalidInput, ServiceNotLoaded, Unavailable
from common.pb import compute_pb2 as pb
from common.pb import pools_pb2 as ppb
from computenode.pools import PoolConfig, PoolFigures, Prepare, ShellPool
from computenode.service_snapshots import staged
from computenode.sessions import SnapshotCache
from computenode.shells.process import ShellProcess, ShellSpec

logger = logging.getLogger(__name__)

RUNTIME_NAMES = {pb.PYTHON: "python", pb.R: "r"}
RUNTIME_ENUMS = {name: enum for enum, name in RUNTIME_NAMES.items()}


def service_id(key: str) -> str:
    """ "<name>/<version>@<revision>" -> "<name>/<version>"."""
    return key.rpartition("@")[0] or key


def load_header(definition: pb.ServiceDefinition) -> dict[str, object]:
    """The shell request that loads a service version (runs its initCode, compiles its code)."""
    return {
        "op": "load",
        "service": {
            "key": definition.key,
            "code": definition.code,
            "init_code": definition.init_code,
            "inputs": [[p.name, p.type] for p in definition.inputs],
            "outputs": [[p.name, p.type] for p in definition.outputs],
            "output_files": list(definition.output_file_names),
        },
    }


async def load_service(
    shell: ShellProcess, definition: pb.ServiceDefinition, snapshots: SnapshotCache | None, timeout: float
) -> dict[str, Any]:
    """Load a service version into `shell`; the shell's reply header ("ok", "error", "console").

    ServiceNotLoaded when the service's snapshot is not in the node's cache (`snapshots`).
    """
    header = load_header(definition)
    try:
        async with staged(shell, definition, snapshots) as snapshot:
            if snapshot is not None:
                header["snapshot"] = snapshot
            reply, _ = await shell.request(header, timeout=timeout)
    except InvalidInput as exc:  # a zip that is not this runtime's snapshot
        return {"ok": False, "error": f"snapshot: {exc.message}", "console": ""}
    return reply


@dataclass
class DedicatedPool:
    definition: pb.ServiceDefinition
    runtime: str
    pool: ShellPool
    owner: str = ""

    def state(self) -> ppb.ServicePoolState:
        f = self.pool.figures()
        return ppb.ServicePoolState(
            service_id=service_id(self.definition.key),
            service_key=self.definition.key,
            initial_size=f.initial_size,
            figures=pool_status(self.runtime, f, service=service_id(self.definition.key)),
            ready=f.idle + f.active >= f.initial_size,
            owner=self.owner,
        )


def pool_status(runtime: str, f: PoolFigures, *, service: str = "") -> pb.PoolStatus:
    return pb.PoolStatus(
        runtime=RUNTIME_ENUMS[runtime],
        max_size=f.max_size,
        current_size=f.current_size,
        active=f.active,
        idle=f.idle,
        queued=f.queued,
        can_open_shell=f.current_size < f.max_size or f.idle > 0,
        service=service,
        initial_size=f.initial_size,
    )


class DedicatedPools:
    """The dedicated pools of this node, by service id."""

    def __init__(
        self,
        specs: dict[str, ShellSpec],
        configs: dict[str, PoolConfig],
        root: Path,
        *,
        load_timeout: float,
        snapshots: SnapshotCache | None = None,
    ) -> None:
        self._specs = specs
        self._configs = configs
        self._root = root
        self._load_timeout = load_timeout
        self.snapshots = snapshots  # services' snapshot zips (the node's snapshot cache)
        self._pools: dict[str, DedicatedPool] = {}

    def get(self, sid: str) -> DedicatedPool | None:
        return self._pools.get(sid)

    def states(self) -> list[ppb.ServicePoolState]:
        return [p.state() for p in self._pools.values()]

    async def apply(
        self, definition: pb.ServiceDefinition, initial_size: int, max_size: int, owner: str = ""
    ) -> DedicatedPool:
        """Create the pool of this service version, or update its definition and sizes."""
        runtime = RUNTIME_NAMES.get(definition.runtime)
        if runtime is None:
            raise InvalidInput(f"unsupported runtime {definition.runtime}")
        if runtime not in self._specs:
            raise Unavailable(f"the {runtime} runtime is not available on this compute node")
        if not 0 <= initial_size <= max_size or max_size < 1:
            raise InvalidInput("pool sizes must satisfy 0 <= initial <= max and max >= 1")
        sid = service_id(definition.key)
        current = self._pools.get(sid)
        if current is not None and current.runtime != runtime:
            await self.remove(sid)
            current = None
        if current is None:
            config = dataclasses.replace(self._configs[runtime], initial_size=initial_size, max_size=max_size)
            pool = ShellPool(self._specs[runtime], config, self._root, prepare=self._preloader(sid))
            current = self._pools[sid] = DedicatedPool(definition, runtime, pool, owner)
            await current.pool.start()
            logger.info("dedicated %s pool for %s: initial %d, max %d", runtime, sid, initial_size, max_size)
            return current
        current.definition = definition
        current.owner = owner
        current.pool.resize(initial_size, max_size)
        return current

    def update_definition(self, definition: pb.ServiceDefinition) -> None:
        """A newer revision was loaded: new shells of its dedicated pool load that one."""
        current = self._pools.get(service_id(definition.key))
        if current is not None and RUNTIME_NAMES.get(definition.runtime) == current.runtime:
            current.definition = definition

    async def remove(self, sid: str) -> bool:
        current = self._pools.pop(sid, None)
        if current is None:
            return False
        await current.pool.close()
        logger.info("removed the dedicated pool of %s", sid)
        return True

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(sid) for sid in list(self._pools)), return_exceptions=True)

    def _preloader(self, sid: str) -> Prepare:
        async def preload(shell: ShellProcess) -> None:
            current = self._pools.get(sid)
            if current is None:
                return
            definition = current.definition
            try:
                header = await load_service(shell, definition, self.snapshots, self._load_timeout)
            except ServiceNotLoaded as exc:
                header = {"ok": False, "error": exc.message}
            # A failing initCode (or a snapshot no longer cached) leaves the shell empty: the request
            # that leases it loads the service again and reports the error (or has the web node resend it).
            shell.loaded_key = definition.key if header.get("ok") else None

        return preload
