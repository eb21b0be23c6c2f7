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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common.errors import InvalidInput, NotFound, ServiceNotLoaded, ShellCrashed, Timeout, Unavailable
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
# The most requests one run sends a shell at once (ServiceRegistry.execute_many).
RUN_MAX = 16
# Told the outcome of request i of an execute_many: its result, or the error it failed with.
Deliver = Callable[[int, "pb.ExecutionResult | Exception"], None]


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


def recent_mean(previous: float | None, sample: float) -> float:
    """A moving average that follows the last few samples (each weighs an eighth)."""
    return sample if previous is None else previous + (sample - previous) / 8


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
        run_budget: float = 0.0,
    ) -> None:
        self._pools = pools
        self._run_budget = run_budget  # seconds of a service's execution time one run may hold
        self._recent: dict[str, float] = {}  # service key -> recent shell round trip per request (s)
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
        self._recent.pop(key, None)

    async def execute(self, request: pb.ExecuteServiceRequest, progress: Progress | None = None) -> pb.ExecutionResult:
        """Run the request in a shell. `progress` hears of a wait for a shell, and of its end
        (awaited: the caller may need to tell someone before the code starts)."""
        service = self._service(request.service_key)
        pool = self._pool_for(service)
        notice = _WaitNotice(progress)
        try:
            async with pool.lease(service.definition.key, on_wait=notice.waiting) as shell:
                await notice.started()
                return await self._run(shell, service, request)
        finally:
            notice.cancel()

    async def execute_many(
        self, requests: list[pb.ExecuteServiceRequest], progresses: list[Progress | None], deliver: Deliver
    ) -> None:
        """Run requests of one service version that arrived together; `deliver(i, outcome)` hears
        of each (a result or an error) as soon as it is known.

        A fast service's requests go to a shell as runs (ShellProcess.request_run): as many as fit
        in `run_budget` seconds of its recent execution time. Others run side by side, each in a
        shell of its own, as with `execute`.
        """
        size = self._run_size(requests[0].service_key)
        indexed = list(enumerate(zip(requests, progresses, strict=True)))
        if size <= 1:
            await asyncio.gather(*(self._execute_one(i, r, p, deliver) for i, (r, p) in indexed))
            return
        runs = [indexed[i : i + size] for i in range(0, len(indexed), size)]
        await asyncio.gather(*(self._execute_run(run, deliver) for run in runs))

    async def _execute_one(
        self, index: int, request: pb.ExecuteServiceRequest, progress: Progress | None, deliver: Deliver
    ) -> None:
        try:
            outcome: pb.ExecutionResult | Exception = await self.execute(request, progress)
        except Exception as exc:
            outcome = exc
        deliver(index, outcome)

    async def _execute_run(
        self, run: list[tuple[int, tuple[pb.ExecuteServiceRequest, Progress | None]]], deliver: Deliver
    ) -> None:
        outcomes: list[pb.ExecutionResult | Exception] = []
        try:
            service = self._service(run[0][1][0].service_key)
            pool = self._pool_for(service)
            notices = [_WaitNotice(p) for _, (_, p) in run]

            def waiting() -> None:
                for notice in notices:
                    notice.waiting()

            try:
                shell = await pool.acquire(service.definition.key, on_wait=waiting, requests=len(run))
                broken = True
                try:
                    started = run[: pool.room(shell)]  # the shell leaves at max_uses: the rest take another
                    for notice in notices[: len(started)]:
                        await notice.started()
                    outcomes = await self._run_many(shell, service, [r for _, (r, _) in started])
                    broken = any(isinstance(o, ShellCrashed | Timeout) for o in outcomes)
                finally:
                    await pool.release(shell, broken=broken, uses=max(1, len(outcomes)))
            finally:
                for notice in notices:
                    notice.cancel()
        except Exception as exc:  # no shell for the run, or it could not load the service
            outcomes = [exc] * len(run)
        for (index, _), outcome in zip(run, outcomes, strict=False):
            deliver(index, outcome)
        # Those after the outcomes never started (past the shell's max_uses, or behind a request
        # that broke the shell): each runs on its own.
        await asyncio.gather(*(self._execute_one(i, r, p, deliver) for i, (r, p) in run[len(outcomes) :]))

    async def _run_many(
        self, shell: ShellProcess, service: LoadedService, requests: list[pb.ExecuteServiceRequest]
    ) -> list[pb.ExecutionResult | Exception]:
        if shell.loaded_key != service.definition.key:
            failure = await self._prepare(shell, service)
            if failure is not None:
                return [failure] * len(requests)
        key = service.definition.key
        started = time.perf_counter()
        replies = await shell.request_run(
            [({"op": "execute", "key": key}, (r.inputs_json,)) for r in requests], timeout=self._execution_timeout
        )
        self._timed(key, time.perf_counter() - started, len(replies))
        outcomes: list[pb.ExecutionResult | Exception] = []
        for reply in replies:
            if isinstance(reply, Exception):
                outcomes.append(reply)
            elif reply[0].get("not_loaded"):
                shell.loaded_key = None
                outcomes.append(ShellCrashed("the shell lost its service state"))
                break
            else:
                outcomes.append(_result(*reply))
        return outcomes

    async def _run(
        self, shell: ShellProcess, service: LoadedService, request: pb.ExecuteServiceRequest
    ) -> pb.ExecutionResult:
        (outcome,) = await self._run_many(shell, service, [request])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _service(self, key: str) -> LoadedService:
        service = self._services.get(key)
        if service is None:
            raise ServiceNotLoaded(f"service {key} is not loaded")
        return service

    def _pool_for(self, service: LoadedService) -> ShellPool:
        dedicated = self.dedicated.get(service_id(service.definition.key))
        return dedicated.pool if dedicated is not None else self._pools[service.runtime]

    def _timed(self, key: str, seconds: float, requests: int) -> None:
        """Fold a shell round trip into the service's recent execution time (per request)."""
        if requests:
            per_request = seconds / requests
            self._recent[key] = recent_mean(self._recent.get(key), per_request)

    def _run_size(self, key: str) -> int:
        """How many requests of the service one run may hold: 1 until its execution time is known."""
        recent = self._recent.get(key)
        if recent is None or self._run_budget <= 0:
            return 1
        return max(1, min(RUN_MAX, 1 + int(self._run_budget / max(recent, 1e-6))))

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
