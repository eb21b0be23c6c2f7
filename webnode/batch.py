"""BatchRunner: runs batch executions of web services on the web node that holds their lease.

A started execution is stored first (webnode/store/batches.py), then run here: its records
go to the compute nodes like ordinary consume requests, at most `parallel_count` at a time,
and each result is stored as soon as it arrives. A background loop renews the leases of the
executions this node runs and claims those whose runner stopped (another web node, or this
one before a restart), so every stored execution finishes. Cancelling deletes the rows and
broadcasts the id so the node running it stops sending records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson

from common.errors import AppError, NotFound, Unavailable
from webnode.compute.cluster import ComputeCluster
from webnode.coord.base import RESYNC, Coordinator
from webnode.routes.consume import result_body
from webnode.service_cache import ServiceCache
from webnode.store.batches import FAILED, IN_PROGRESS, BatchExecution, BatchItem, BatchStore
from webnode.store.services import Service

logger = logging.getLogger(__name__)
CHANNEL = "batches"
_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between tries of a record the compute tier could not take


def failure_body(message: str) -> bytes:
    """A record that could not run (compute node unavailable, service deleted): the consume shape."""
    return orjson.dumps(
        {
            "success": False,
            "errorMessage": message,
            "outputParameters": {},
            "outputFiles": {},
            "consoleOutput": "",
            "changedFiles": [],
        }
    )


class BatchRunner:
    def __init__(
        self,
        store: BatchStore,
        services: ServiceCache,
        cluster: ComputeCluster,
        coordinator: Coordinator,
        *,
        lease: float,
        timeout: float,
        realtime: Callable[[Service, bytes], Awaitable[bytes]] | None = None,
    ) -> None:
        self.store = store
        self._realtime = realtime  # scores a record of a realtime service (webnode/routes/realtime.py)
        self.node = uuid.uuid4().hex
        self._services = services
        self._cluster = cluster
        self._coordinator = coordinator
        self._lease = lease
        self._timeout = timeout
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        coordinator.subscribe(CHANNEL, self._on_cancel)

    @property
    def lease_until(self) -> float:
        return time.time() + self._lease

    async def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._lease_loop())

    async def close(self) -> None:
        tasks = [t for t in (self._loop_task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running.clear()

    # ------------------------------------------------------------------ running
    def run(self, execution: BatchExecution) -> None:
        """Run a stored execution this node holds the lease of, in the background."""
        if execution.id in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._run(execution))
        self._running[execution.id] = task
        task.add_done_callback(lambda _t: self._running.pop(execution.id, None))

    async def _run(self, execution: BatchExecution) -> None:
        try:
            await self.store.set_state(execution.id, IN_PROGRESS)
            pending = await self.store.items(execution.id, pending_only=True)
            limit = asyncio.Semaphore(max(1, execution.parallel_count))
            failed = await asyncio.gather(*(self._record(execution, item, limit) for item in pending))
            if any(failed) and await self.store.find(execution.id) is not None:
                await self.store.set_state(execution.id, FAILED)  # the service was deleted meanwhile
            else:
                await self.store.finish_if_done(execution.id)  # also when resumed with nothing left to run
        except asyncio.CancelledError:
            raise
        except AppError as exc:
            logger.warning("batch execution %s stopped: %s (another web node will resume it)", execution.id, exc)
        except Exception:
            logger.exception("batch execution %s stopped", execution.id)

    async def _record(self, execution: BatchExecution, item: BatchItem, limit: asyncio.Semaphore) -> bool:
        """Run one record and store its result; True when the service itself is gone."""
        async with limit:
            gone = False
            try:
                body = await self._execute(execution, item)
            except NotFound as exc:
                body, gone = failure_body(exc.message), True
            except AppError as exc:
                body = failure_body(exc.message)
            except Exception:
                # A bug, not the record's fault: record it rather than resume the execution forever.
                logger.exception("batch execution %s record %d failed", execution.id, item.index)
                body = failure_body("internal error while running this record (see the web node log)")
            await self.store.set_result(execution.id, item.index, body.decode())
            return gone

    async def _execute(self, execution: BatchExecution, item: BatchItem) -> bytes:
        """One record; a compute node that is briefly unavailable or busy is retried with backoff."""
        for delay in (*_RETRY_DELAYS, None):
            try:
                entry = await self._services.get(execution.name, execution.version)
                if entry.service.runtime == "Realtime" and self._realtime is not None:
                    return await self._realtime(entry.service, item.inputs.encode())
                result = await self._cluster.execute_service(entry.definition, item.inputs.encode(), self._timeout)
                return result_body(result)
            except Unavailable:
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ cancelling
    async def cancel(self, execution_id: str) -> None:
        """Stop running `execution_id` on whichever web node runs it (its rows are deleted by the caller)."""
        self._stop(execution_id)
        await self._coordinator.publish(CHANNEL, execution_id)

    def _on_cancel(self, message: str) -> None:
        if message != RESYNC:
            self._stop(message)

    def _stop(self, execution_id: str) -> None:
        task = self._running.pop(execution_id, None)
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------------ leases
    async def _lease_loop(self) -> None:
        while True:
            try:
                await self.store.renew(self.node, list(self._running), self.lease_until)
                for execution in await self.store.claim_orphans(self.node, time.time(), self.lease_until):
                    if execution.id not in self._running:
                        logger.info("resuming batch execution %s", execution.id)
                        self.run(execution)
            except AppError as exc:
                logger.warning("batch lease upkeep failed: %s", exc.message)
            except Exception:
                logger.exception("batch lease upkeep failed")  # keep the loop alive; the next round retries
            await asyncio.sleep(self._lease / 3)
