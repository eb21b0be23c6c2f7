"""A shell child process, seen from the compute node: a Popen-shaped lifecycle plus framed requests.

Each shell runs in its own process group (signals reach its children too), talks over a
socketpair, and answers one request at a time. Shutdown escalates: close the socket
(the child exits), wait, SIGTERM the group, wait, SIGKILL the group.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ShellCrashed, Timeout
from computenode.shells import protocol

logger = logging.getLogger(__name__)
_ids = itertools.count(1)


@dataclass(frozen=True)
class ShellSpec:
    """How to start the shells of one runtime."""

    runtime: str  # "python" | "r"
    module: str  # the child entry point, run with `python -m`

    def argv(self, fd: int, root: Path) -> list[str]:
        return [sys.executable, "-m", self.module, str(fd), str(root)]


PYTHON = ShellSpec("python", "computenode.shells.python_child")
R = ShellSpec("r", "computenode.shells.r_child")


class ShellProcess:
    """One running shell. Not safe for concurrent requests: the pool leases it to one caller."""

    def __init__(self, spec: ShellSpec, root: Path) -> None:
        self.spec = spec
        self.id = next(_ids)
        self.root = root / f"{spec.runtime}-{os.getpid()}-{self.id}"
        self.loaded_key: str | None = None
        self.uses = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, timeout: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.spec.argv(child.fileno(), self.root),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.root),
            )
        finally:
            child.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=parent, limit=2**26)
        reply, _ = await self.request({"op": "ping"}, timeout=timeout)
        if not reply.get("ok"):
            raise ShellCrashed(f"{self.spec.runtime} shell failed to start: {reply.get('error')}")

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def request(
        self, header: dict[str, Any], *blobs: bytes, timeout: float | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send one frame and wait for the reply; ShellCrashed if the child dies, Timeout after `timeout`."""
        if self._writer is None or self._reader is None:
            raise ShellCrashed("shell is not running")
        try:
            self._writer.write(protocol.encode(header, *blobs))
            await self._writer.drain()
            return await asyncio.wait_for(protocol.read_frame(self._reader), timeout)
        except TimeoutError:
            await self.kill()
            raise Timeout(f"execution did not finish within {timeout:g} seconds; the shell was replaced") from None
        except (protocol.ProtocolError, ConnectionError, OSError):
            code = await self._reap()
            raise ShellCrashed(f"the {self.spec.runtime} shell exited unexpectedly ({_describe(code)})") from None

    def send_signal(self, signum: int) -> None:
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
        if self._writer is not None:
            self._writer.close()
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
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._reader = None
        if self._proc is None:
            return None
        if not await self._wait(1.0):
            self.send_signal(signal.SIGKILL)
            await self._wait(5.0)
        # The process group may still hold runaway children.
        self.send_signal(signal.SIGKILL)
        return self._proc.returncode

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def _describe(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
