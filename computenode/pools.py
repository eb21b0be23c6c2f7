"""ShellPool: warm shells of one runtime, leased one request at a time.

A lease prefers an idle shell that already holds the wanted service version (its
initCode already ran), then any idle shell, then starts a new one while below MaxSize and
takes whichever is free first, that one or a busy one released meanwhile; past MaxSize the
request waits in a bounded queue until `acquire_timeout` (PoolExhausted, 503 at the web
node). A shell is replaced instead of reused when it crashed, timed out, was killed by a
cancellation, reached `max_uses`, grew past `memory_ceiling` bytes of RSS, or left child
processes running; a replacement starts in the background whenever fewer than InitialSize
shells are idle or starting.

A dedicated pool (one per service version with one) is the same class with a `prepare`
hook that loads the service into each new shell before it counts as idle, so its shells
are warm with the service's initCode already run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import PoolExhausted, ShellCrashed
from computenode.limits import ShellLimits
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
    memory_ceiling: int = 0  # bytes of RSS after which a shell is recycled; 0 = never
    limits: ShellLimits = field(default_factory=ShellLimits)


@dataclass(frozen=True)
class PoolFigures:
    max_size: int
    current_size: int
    active: int
    idle: int
    queued: int
    initial_size: int = 0
    recycled: int = 0


Prepare = Callable[[ShellProcess], Awaitable[None]]


class ShellPool:
    def __init__(self, spec: ShellSpec, config: PoolConfig, root: Path, *, prepare: Prepare | None = None) -> None:
        self.spec = spec
        self.config = config
        self.root = root
        self._prepare = prepare
        self._recycled = 0
        self._idle: collections.deque[ShellProcess] = collections.deque()
        self._busy: set[ShellProcess] = set()
        self._starting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._queued_requests = 0  # requests waiting on `_waiters` (a run counts each of its requests)
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Shells near max_uses whose replacement is starting, and those whose replacement is ready.
        self._retiring: set[ShellProcess] = set()
        self._retired: set[ShellProcess] = set()

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
    async def lease(
        self, service_key: str | None = None, *, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[ShellProcess]:
        shell = await self.acquire(service_key, on_wait=on_wait)
        broken = True
        try:
            yield shell
            broken = False
        finally:
            await self.release(shell, broken=broken)

    async def acquire(
        self, service_key: str | None = None, *, on_wait: Callable[[], None] | None = None, requests: int = 1
    ) -> ShellProcess:
        """A shell for `service_key` (one that holds it, if idle). `on_wait` is called once if the
        request has to wait: for a shell to start, or in the queue. `requests`: how many requests
        the shell is for (a run), as counted in the queue and its limit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.acquire_timeout
        queued_before = False  # FIFO: a newcomer does not take a shell ahead of queued requests
        # The shell this request started, if it had to (its error, None once it is ready): the
        # request then waits for it or for a busy shell to free, whichever comes first. A busy
        # shell is usually free long before a new one has started (0.25 s for Python, 0.45 s for R).
        started: asyncio.Future[Exception | None] | None = None
        while True:
            if self._closed:
                raise PoolExhausted("the compute node is shutting down")
            barging = not queued_before and any(not w.done() for w in self._waiters)
            shell = None if barging else self._take_idle(service_key)
            if shell is not None:
                self._busy.add(shell)
                return shell
            if started is not None and started.done() and (failure := started.result()) is not None:
                raise failure
            if on_wait is not None and not queued_before:
                on_wait()
                on_wait = None
            if not barging and started is None and self._size() < self.config.max_size:
                started = self._spawn_background()
            elif not queued_before and self._queued_requests >= self.config.queue_limit:
                raise PoolExhausted(f"all {self.config.max_size} {self.spec.runtime} shells are busy")
            remaining = deadline - loop.time()
            if started is not None and not started.done():
                remaining = max(remaining, self.config.start_timeout)  # the start has a limit of its own
            if remaining <= 0:
                raise PoolExhausted(
                    f"all {self.config.max_size} {self.spec.runtime} shells stayed busy for "
                    f"{self.config.acquire_timeout:g} s"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            if queued_before:
                self._waiters.appendleft(waiter)  # woken but beaten to the shell: keep our place
            else:
                self._waiters.append(waiter)
            queued_before = True
            self._queued_requests += requests
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: hand the free shell to the next waiter
                raise
            finally:
                self._queued_requests -= requests
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def room(self, shell: ShellProcess) -> int:
        """How many more requests `shell` may serve before it leaves at max_uses (at least 1)."""
        return max(1, self.config.max_uses - shell.uses)

    async def release(self, shell: ShellProcess, *, broken: bool = False, uses: int = 1) -> None:
        """Give `shell` back after it served `uses` requests (a run of them: see ShellProcess.request_run)."""
        self._busy.discard(shell)
        shell.uses += uses
        reason = "closing" if self._closed else self._recycle_reason(shell, broken)
        if not reason and self._wearing(shell):
            # Its replacement starts now, so that it is ready when this one leaves at max_uses:
            # no request waits for a shell to start because of it.
            self._retiring.add(shell)
            self._spawn_background(successor_of=shell)
        if reason:
            self._retiring.discard(shell)
            self._retired.discard(shell)
            if not self._closed:
                self._recycled += 1
                logger.info("replacing %s shell %s: %s", self.spec.runtime, shell.pid, reason)
            await self._discard(shell)
            self.replenish()
        else:
            self._idle.append(shell)
        self._wake_one()

    def _recycle_reason(self, shell: ShellProcess, broken: bool) -> str:
        if shell.poll() is not None:
            return "the shell exited"
        if broken:
            return "its request failed"
        if shell.recycle_reason:
            return shell.recycle_reason
        if shell.uses >= self.config.max_uses:
            return f"it served {shell.uses} requests"
        # (A worn shell whose replacement is ready is one over MaxSize until it leaves.)
        if self._size() - len(self._retired) >= self.config.max_size:  # the pool was resized below its shells
            return "the pool shrank"
        ceiling = self.config.memory_ceiling
        if ceiling and (rss := shell.rss()) > ceiling:
            return f"its memory ({rss >> 20} MB) passed the ceiling ({ceiling >> 20} MB)"
        return ""

    def replenish(self) -> None:
        """Start shells in the background until `initial_size` are idle or starting (within max_size).

        Called when a shell leaves for good (recycled, or taken by a session for its whole life),
        so the next request finds a warm one."""
        if (
            not self._closed
            and self._size() < self.config.max_size
            and len(self._idle) + self._starting < self.config.initial_size
        ):
            self._spawn_background()

    def resize(self, initial_size: int, max_size: int) -> None:
        """Change the sizes: start shells up to the new initial size; idle shells above max close."""
        self.config = dataclasses.replace(self.config, initial_size=initial_size, max_size=max_size)
        while self._idle and self._size() > max_size:
            self._forget(self._idle.popleft())
        for _ in range(max(0, initial_size - len(self._idle) - self._starting)):
            if self._size() >= max_size:
                break
            self._spawn_background()
        self._wake_one()

    # ------------------------------------------------------------------ figures
    def figures(self) -> PoolFigures:
        return PoolFigures(
            max_size=self.config.max_size,
            current_size=self._size(),
            active=len(self._busy),
            idle=len(self._idle),
            queued=self._queued_requests,
            initial_size=self.config.initial_size,
            recycled=self._recycled,
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
        shell = ShellProcess(self.spec, self.root, self.config.limits)
        try:
            await shell.start(self.config.start_timeout)
            if self._prepare is not None:
                await self._prepare(shell)
        except BaseException as exc:
            await self._discard(shell)
            if isinstance(exc, ShellCrashed | OSError):
                raise ShellCrashed(f"could not start a {self.spec.runtime} shell: {exc}") from exc
            raise
        return shell

    def _spawn_background(self, successor_of: ShellProcess | None = None) -> asyncio.Future[Exception | None]:
        """Start a shell in the background; it joins the idle ones when ready. The future
        returned says how it went: None once the shell is idle, else the error.

        A successor of a worn shell (`successor_of`) is not counted as starting (acquire may
        still start shells up to MaxSize), and once idle it is the one shell over MaxSize until
        the worn shell leaves at max_uses."""
        counted = successor_of is None
        if counted:  # counted as starting from now on, so a concurrent acquire does not start one more
            self._starting += 1
        outcome: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

        async def spawn() -> None:
            try:
                shell = await self._new_shell()
            except Exception as exc:
                logger.warning("could not start a %s shell: %s", self.spec.runtime, exc)
                if successor_of is not None:
                    self._retiring.discard(successor_of)  # it serves on; its next release tries again
                outcome.set_result(exc)
                self._wake_all()  # the request that started it fails; others may start one themselves
                return
            finally:
                if counted:
                    self._starting -= 1
            if self._closed:
                outcome.set_result(PoolExhausted("the compute node is shutting down"))
                await self._discard(shell)
                return
            self._idle.append(shell)
            if successor_of is not None and successor_of in self._retiring:  # still in the pool
                self._retiring.discard(successor_of)
                self._retired.add(successor_of)
            outcome.set_result(None)
            self._wake_one()

        self._track(spawn())
        return outcome

    def _wearing(self, shell: ShellProcess) -> bool:
        """Whether `shell` is within a tenth of max_uses of leaving and its successor is not started yet."""
        ahead = self.config.max_uses // 10
        return (
            ahead > 0
            and shell.uses >= self.config.max_uses - ahead
            and shell not in self._retiring
            and shell not in self._retired
        )

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, shell: ShellProcess) -> None:
        self._track(self._discard(shell))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task the pool cancels when it closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _discard(self, shell: ShellProcess) -> None:
        try:
            await shell.terminate(grace=1.0)
        finally:
            shell.cleanup()
