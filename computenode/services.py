"""Service versions loaded on this compute node, and their execution in pooled shells.

A service version with a dedicated pool (computenode/dedicated_pools.py) runs only in the
shells of that pool; every other one runs in the generic pool of its runtime. Either way
the shell gets a fresh copy of the post-initCode namespace and its working directory back
as it was after initCode (python_child.py), so nothing leaks between requests or users.
A service with a snapshot is restored from the node's snapshot cache in each shell that
loads it (computenode/service_snapshots.py); LoadService refuses one whose zip is not cached.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common.errors import InvalidInput, NotFound, ServiceNotLoaded, ShellCrashed, Unavailable
from common.pb import compute_pb2 as pb
from computenode.dedicated_pools import RUNTIME_NAMES, DedicatedPools, load_service, service_id
from computenode.pools import ShellPool
from computenode.sessions import SnapshotCache
from computenode.shells.process import ShellProcess

logger = logging.getLogger(__name__)
__all__ = ["RUNTIME_NAMES", "LoadedService", "Progress", "ServiceRegistry"]


# A request that waits this long for a shell is reported QUEUED (and then STARTED) on its stream:
# shorter waits, the common case under load, cost no extra messages; they are simply in flight.
QUEUED_NOTICE_AFTER = 0.02


class Progress(Protocol):
    """Told where a request that had to wait for a shell stands."""

    def queued(self) -> None: ...

    async def started(self) -> None: ...


class _WaitNotice:
    """Tells `progress` of a wait for a shell once it passes QUEUED_NOTICE_AFTER, and of its end."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._timer: asyncio.TimerHandle | None = None
        self._told = False

    def waiting(self) -> None:
        if self._progress is not None:
            self._timer = asyncio.get_running_loop().call_later(QUEUED_NOTICE_AFTER, self._tell)

    def _tell(self) -> None:
        self._told = True
        assert self._progress is not None
        self._progress.queued()

    async def started(self) -> None:
        self.cancel()
        if self._told and self._progress is not None:
            await self._progress.started()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(frozen=True)
class LoadedService:
    definition: pb.ServiceDefinition
    runtime: str


class ServiceRegistry:
    """Definitions by key; executes them in a shell of the right pool."""

    def __init__(
        self,
        pools: dict[str, ShellPool],
        *,
        execution_timeout: float,
        dedicated: DedicatedPools | None = None,
        snapshots: SnapshotCache | None = None,
    ) -> None:
        self._pools = pools
        self._services: dict[str, LoadedService] = {}
        self._execution_timeout = execution_timeout
        self.dedicated = dedicated or DedicatedPools({}, {}, Path("."), load_timeout=execution_timeout)
        self._snapshots = snapshots  # services' snapshot zips (the node's snapshot cache)

    def __len__(self) -> int:
        return len(self._services)

    def load(self, definition: pb.ServiceDefinition) -> None:
        runtime = RUNTIME_NAMES.get(definition.runtime)
        if runtime is None:
            raise InvalidInput(f"unsupported runtime {definition.runtime}")
        if runtime not in self._pools:
            raise Unavailable(f"the {runtime} runtime is not available on this compute node")
        if definition.snapshot_id and (self._snapshots is None or self._snapshots.path(definition.snapshot_id) is None):
            raise NotFound(
                f"snapshot {definition.snapshot_id} of service {definition.key} is not in this compute node's cache; "
                "send it (CacheSnapshot) first"
            )
        self._services[definition.key] = LoadedService(definition, runtime)
        self.dedicated.update_definition(definition)

    def unload(self, key: str) -> None:
        self._services.pop(key, None)

    async def execute(self, request: pb.ExecuteServiceRequest, progress: Progress | None = None) -> pb.ExecutionResult:
        """Run the request in a shell. `progress` hears of a wait for a shell, and of its end
        (awaited: the caller may need to tell someone before the code starts)."""
        service = self._services.get(request.service_key)
        if service is None:
            raise ServiceNotLoaded(f"service {request.service_key} is not loaded")
        dedicated = self.dedicated.get(service_id(service.definition.key))
        pool = dedicated.pool if dedicated is not None else self._pools[service.runtime]
        notice = _WaitNotice(progress)
        try:
            async with pool.lease(service.definition.key, on_wait=notice.waiting) as shell:
                await notice.started()
                return await self._run(shell, service, request)
        finally:
            notice.cancel()

    async def _run(
        self, shell: ShellProcess, service: LoadedService, request: pb.ExecuteServiceRequest
    ) -> pb.ExecutionResult:
        if shell.loaded_key != service.definition.key:
            failure = await self._prepare(shell, service)
            if failure is not None:
                return failure
        header, blobs = await shell.request(
            {"op": "execute", "key": service.definition.key},
            request.inputs_json,
            timeout=self._execution_timeout,
        )
        if header.get("not_loaded"):
            shell.loaded_key = None
            raise ShellCrashed("the shell lost its service state")
        return _result(header, blobs)

    async def _prepare(self, shell: ShellProcess, service: LoadedService) -> pb.ExecutionResult | None:
        shell.loaded_key = None
        try:
            header = await load_service(shell, service.definition, self._snapshots, self._execution_timeout)
        except ServiceNotLoaded:
            self.unload(service.definition.key)  # the web node sends the snapshot again, then the service
            raise
        if not header.get("ok"):
            return pb.ExecutionResult(
                success=False,
                error_message=str(header.get("error", "could not load the service")),
                console_output=str(header.get("console", "")),
                outputs_json=b"{}",
            )
        shell.loaded_key = service.definition.key
        return None


def _result(header: dict[str, object], blobs: list[bytes]) -> pb.ExecutionResult:
    files_meta = header.get("files") or []
    assert isinstance(files_meta, list)
    output_files = [
        pb.OutputFile(name=str(name), present=bool(present), content=blobs[i + 1] if present else b"")
        for i, (name, present) in enumerate(files_meta)
    ]
    changed = header.get("changed") or []
    assert isinstance(changed, list)
    return pb.ExecutionResult(
        success=bool(header.get("success")),
        error_message=str(header.get("error") or ""),
        outputs_json=blobs[0] if blobs else b"{}",
        console_output=str(header.get("console") or ""),
        changed_files=[str(c) for c in changed],
        output_files=output_files,
    )
