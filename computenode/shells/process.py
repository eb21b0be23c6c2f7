"""A shell child process, seen from the compute node: a Popen-shaped lifecycle plus framed requests.

Each shell runs in its own process group (signals reach its children too) and, where the
node has cgroups, in its own cgroup (computenode/cgroups.py: a kill reaches every process
it forked, also those that left the group with setsid), with its resource limits and OS
user (computenode/limits.py), in a private (0700) working directory, talks over a
socketpair, and answers one request at a time. Shutdown escalates: close the socket (the
child exits), wait, SIGTERM the group, wait, SIGKILL the group (its cgroup), then remove
the cgroup.

`cancel()` is the cancellation primitive: SIGINT to the shell's group (KeyboardInterrupt
in Python, an interrupt in R), and if the running request has not answered after a grace
period, the shell is killed (the request then fails with ShellCrashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ShellCrashed, Timeout
from computenode.cgroups import ShellCgroup
from computenode.limits import ShellLimits
from computenode.shells import protocol

logger = logging.getLogger(__name__)
_ids = itertools.count(1)


@dataclass(frozen=True)
class ShellSpec:
    """How to start the shells of one runtime."""

    runtime: str  # "python" | "r"
    module: str  # the child entry point, run with `python -m`
    python: str = ""  # the interpreter (O16N_SHELL_PYTHON); empty: the compute node's own

    def argv(self, fd: int) -> list[str]:
        """The command line; the shell starts in its working directory, whose path stays out of it
        (a command line is world-readable in /proc)."""
        return [self.python or sys.executable, "-m", self.module, str(fd)]


PYTHON = ShellSpec("python", "computenode.shells.python_child")
R = ShellSpec("r", "computenode.shells.r_child")


class ShellProcess:
    """One running shell. Not safe for concurrent requests: the pool leases it to one caller."""

    def __init__(self, spec: ShellSpec, root: Path, limits: ShellLimits | None = None) -> None:
        self.spec = spec
        self.id = next(_ids)
        # Unguessable: shells of one run-as user cannot list the directory above and reach a sibling's.
        self.root = root / f"{spec.runtime}-{os.getpid()}-{self.id}-{secrets.token_hex(8)}"
        self.limits = limits or ShellLimits()
        self.loaded_key: str | None = None
        self.uses = 0
        # Set when the shell must not serve another request (stray child processes, ...).
        self.recycle_reason = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._connection: protocol.FrameConnection | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._cancelled = False
        self._cgroup: ShellCgroup | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, timeout: float) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # mkdir's mode is masked by the umask
        if self.limits.uids is not None and self.limits.run_as is None:
            self.limits = dataclasses.replace(self.limits, run_as=self.limits.uids.take())
        run_as = self.limits.run_as
        env = None
        if run_as is not None:
            os.chown(self.root, run_as.uid, run_as.gid)
            env = {**os.environ, "HOME": str(self.root), "USER": run_as.user, "LOGNAME": run_as.user}
        if self.limits.cgroups is not None:
            self._cgroup = self.limits.cgroups.create(f"{self.spec.runtime}-{self.id}")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.spec.argv(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.root),
                env=env,
                preexec_fn=self.limits.preexec(self._cgroup),
            )
        except BaseException:
            self._remove_cgroup()
            raise
        finally:
            child.close()
        _, self._connection = await asyncio.get_running_loop().create_unix_connection(
            protocol.FrameConnection, sock=parent
        )
        reply, _ = await self.request({"op": "ping"}, timeout=timeout)
        if not reply.get("ok"):
            raise ShellCrashed(f"{self.spec.runtime} shell failed to start: {reply.get('error')}")

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def rss(self) -> int:
        """Resident memory of the shell process in bytes (0 when it cannot be read)."""
        if self._proc is None:
            return 0
        try:
            with open(f"/proc/{self._proc.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    async def request(
        self, header: dict[str, Any], *blobs: bytes, timeout: float | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send one frame and wait for the reply; ShellCrashed if the child dies, Timeout after `timeout`."""
        (reply,) = await self.request_run([(header, blobs)], timeout)
        if isinstance(reply, ShellCrashed | Timeout):
            raise reply
        return reply

    async def request_run(
        self, frames: list[tuple[dict[str, Any], tuple[bytes, ...]]], timeout: float | None = None
    ) -> list[tuple[dict[str, Any], list[bytes]] | ShellCrashed | Timeout]:
        """Send several requests in one write and collect their replies in order.

        The shell reads them back to back, so it is woken once instead of once per request.
        Each request has `timeout` from when the shell starts it (its predecessor's reply).
        The list ends early with the error of the first request that crashed the shell or
        timed out (the shell is then gone): the requests after it never started.
        """
        connection = self._connection
        if connection is None:
            raise ShellCrashed("shell is not running")
        replies: list[tuple[dict[str, Any], list[bytes]] | ShellCrashed | Timeout] = []
        self._idle.clear()
        try:
            await self._exchange(connection, frames, timeout, replies)
        except (ShellCrashed, Timeout) as exc:
            replies.append(exc)
        finally:
            self._idle.set()
        return replies

    async def _exchange(
        self,
        connection: protocol.FrameConnection,
        frames: list[tuple[dict[str, Any], tuple[bytes, ...]]],
        timeout: float | None,
        replies: list[Any],
    ) -> None:
        """Write `frames`, then await their replies one by one, appending each to `replies`."""
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        try:
            connection.send_many(frames)
            for _ in frames:
                future = connection.reply()
                if timeout is not None:  # a timer on the reply itself: no task, no timeout context
                    timer = loop.call_later(timeout, _expire, future)
                reply = await future
                if timer is not None:
                    timer.cancel()
                if reply[0].get("strays"):
                    self.recycle_reason = f"user code left {reply[0]['strays']} child process(es) running"
                replies.append(reply)
        except _Expired:
            await self.kill()
            raise Timeout(f"execution did not finish within {timeout:g} seconds; the shell was replaced") from None
        except (protocol.ProtocolError, ConnectionError, OSError):
            code = await self._reap()
            if self._cancelled:
                raise ShellCrashed(
                    "the execution was cancelled and did not stop in time; the shell was killed"
                ) from None
            raise ShellCrashed(f"the {self.spec.runtime} shell exited unexpectedly ({_describe(code)})") from None
        finally:
            if timer is not None:
                timer.cancel()

    async def cancel(self, grace: float = 1.0) -> bool:
        """Interrupt the running request; kill the shell if it has not answered within `grace` s.

        Returns True when the shell survived (the interrupted request answers normally,
        e.g. success false with "execution interrupted"), False when it was killed (the
        request fails with ShellCrashed; a pool replaces the shell on release). A shell that
        is not running a request is left alone.
        """
        if not self.busy or self.poll() is not None:
            return self.poll() is None
        self.interrupt()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            self._cancelled = True
            await self.kill()
            return False
        return self.poll() is None

    def send_signal(self, signum: int) -> None:
        """Signal the shell's process group; SIGKILL kills its whole cgroup when it has one."""
        if signum == signal.SIGKILL and self._cgroup is not None:
            self._cgroup.kill()
            return
        if self._proc is None or self._proc.returncode is not None:
            return
        try:
            os.killpg(self._proc.pid, signum)
        except ProcessLookupError:
            pass

    def interrupt(self) -> None:
        self.send_signal(signal.SIGINT)

    async def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        await self._reap()

    async def terminate(self, grace: float = 2.0) -> None:
        """Ask nicely (close the socket), then SIGTERM, then SIGKILL the process group."""
        if self._connection is not None:
            self._connection.close()
        for step in (None, signal.SIGTERM, signal.SIGKILL):
            if step is not None:
                self.send_signal(step)
            if await self._wait(grace):
                break
        await self._reap()

    async def _wait(self, timeout: float) -> bool:
        if self._proc is None:
            return True
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _reap(self) -> int | None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._proc is None:
            return None
        if not await self._wait(1.0):
            self.send_signal(signal.SIGKILL)
            await self._wait(5.0)
        # The process group may still hold runaway children, also once the shell itself is gone;
        # its cgroup also holds those that left the group (setsid).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        await self._empty_cgroup()
        return self._proc.returncode

    async def _empty_cgroup(self) -> None:
        """Kill everything left in the shell's cgroup and remove it (polling while its processes exit)."""
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is None:
            return
        for _ in range(500):
            if cgroup.try_remove():
                return
            await asyncio.sleep(0.01)
        logger.warning("shell %s: its cgroup %s did not empty within 5 s", self.pid, cgroup.dirs[0])

    def _remove_cgroup(self) -> None:
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    def cleanup(self) -> None:
        import shutil

        self._remove_cgroup()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.limits.uids is not None and self.limits.run_as is not None:
            self.limits.uids.give_back(self.limits.run_as)  # its directory is gone: the uid may serve another shell


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class _Expired(Exception):
    """A shell request's time limit passed."""


def _expire(future: asyncio.Future[tuple[dict[str, Any], list[bytes]]]) -> None:
    if not future.done():
        future.set_exception(_Expired())


def _describe(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
