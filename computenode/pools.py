"""ShellPool: warm shells of one runtime, leased one request at a time.

A lease prefers an idle shell that already holds the wanted service version (its
initCode already ran), then any idle shell, then starts a new one while below MaxSize;
past that the request waits in a bounded queue until `acquire_timeout` (PoolExhausted,
503 at the web node). Shells that crashed, timed out or reached `max_uses` are replaced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import PoolExhausted, ShellCrashed
from computenode.shells.process import ShellProcess, ShellSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    initial_size: int
    max_size: int
    acquire_timeout: float
    queue_limit: int
    max_uses: int
    start_timeout: float


@dataclass(frozen=True)
class PoolFigures:
    max_size: int
    current_size: int
    active: int
    idle: int
    queued: int


class ShellPool:
    def __init__(self, spec: ShellSpec, config: PoolConfig, root: Path) -> None:
        self.spec = spec
        self.config = config
        self.root = root
        self._idle: collections.deque[ShellProcess] = collections.deque()
        self._busy: set[ShellProcess] = set()
        self._starting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start InitialSize shells in the background (the node serves meanwhile)."""
        for _ in range(self.config.initial_size):
            self._spawn_background()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        shells = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(self._discard(s) for s in shells), return_exceptions=True)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolExhausted("the compute node is shutting down"))

    # ------------------------------------------------------------------ leasing
    @contextlib.asynccontextmanager
    async def lease(self, service_key: str | None = None) -> AsyncIterator[ShellProcess]:
        shell = await self.acquire(service_key)
        broken = True
        try:
            yield shell
            broken = False
        finally:
            await self.release(shell, broken=broken)

    async def acquire(self, service_key: str | None = None) -> ShellProcess:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.acquire_timeout
        while True:
            if self._closed:
                raise PoolExhausted("the compute node is shutting down")
            shell = self._take_idle(service_key)
            if shell is not None:
                self._busy.add(shell)
                return shell
            if self._size() < self.config.max_size:
                self._starting += 1
                try:
                    shell = await self._new_shell()
                finally:
                    self._starting -= 1
                self._busy.add(shell)
                return shell
            if len(self._waiters) >= self.config.queue_limit:
                raise PoolExhausted(f"all {self.config.max_size} {self.spec.runtime} shells are busy")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PoolExhausted(
                    f"all {self.config.max_size} {self.spec.runtime} shells stayed busy for "
                    f"{self.config.acquire_timeout:g} s"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def release(self, shell: ShellProcess, *, broken: bool = False) -> None:
        self._busy.discard(shell)
        shell.uses += 1
        if broken or shell.poll() is not None or shell.uses >= self.config.max_uses or self._closed:
            await self._discard(shell)
            if not self._closed and len(self._idle) + self._starting < self.config.initial_size:
                self._spawn_background()
        else:
            self._idle.append(shell)
        self._wake_one()

    # ------------------------------------------------------------------ figures
    def figures(self) -> PoolFigures:
        return PoolFigures(
            max_size=self.config.max_size,
            current_size=self._size(),
            active=len(self._busy),
            idle=len(self._idle),
            queued=len(self._waiters),
        )

    # ------------------------------------------------------------------ internals
    def _size(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    def _take_idle(self, service_key: str | None) -> ShellProcess | None:
        while self._idle:
            chosen = None
            if service_key is not None:
                chosen = next((s for s in reversed(self._idle) if s.loaded_key == service_key), None)
            if chosen is None:
                # Prefer a shell holding nothing, then the least recently used one.
                chosen = next((s for s in self._idle if s.loaded_key is None), self._idle[0])
            self._idle.remove(chosen)
            if chosen.poll() is None:
                return chosen
            self._forget(chosen)
        return None

    async def _new_shell(self) -> ShellProcess:
        shell = ShellProcess(self.spec, self.root)
        try:
            await shell.start(self.config.start_timeout)
        except BaseException as exc:
            await self._discard(shell)
            if isinstance(exc, ShellCrashed | OSError):
                raise ShellCrashed(f"could not start a {self.spec.runtime} shell: {exc}") from exc
            raise
        return shell

    def _spawn_background(self) -> None:
        async def spawn() -> None:
            self._starting += 1
            try:
                shell = await self._new_shell()
            except Exception as exc:
                logger.warning("could not start a %s shell: %s", self.spec.runtime, exc)
                return
            finally:
                self._starting -= 1
            if self._closed:
                await self._discard(shell)
                return
            self._idle.append(shell)
            self._wake_one()

        task = asyncio.get_running_loop().create_task(spawn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, shell: ShellProcess) -> None:
        task = asyncio.get_running_loop().create_task(self._discard(shell))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _discard(self, shell: ShellProcess) -> None:
        try:
            await shell.terminate(grace=1.0)
        finally:
            shell.cleanup()
