"""Per-shell isolation: resource limits and the OS user a shell runs as.

The limits are applied in the forked child just before it execs the shell (a preexec
function), so they bind the shell and everything it forks, never the compute node:

- `memory_bytes` -> RLIMIT_AS (address space; allocations past it fail with MemoryError
  in Python, or abort the shell);
- `cpu_seconds` -> RLIMIT_CPU (CPU time over the whole life of the shell; the kernel sends
  SIGXCPU, then SIGKILL);
- `open_files` -> RLIMIT_NOFILE.

0 leaves a limit as inherited. Every shell is also made a child subreaper, so what its code
forks and orphans stays its child (python_child.py reports such processes left running and
the pool replaces the shell, killing its process group). `run_as_user` names an unprivileged account the shells run
as (the compute node must run as root to use it); their working directories are then
owned by that user.
"""

from __future__ import annotations

import ctypes
import functools
import pwd
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.settings import SettingsError

if TYPE_CHECKING:
    from computenode.settings import ComputeNodeSettings


@dataclass(frozen=True)
class RunAs:
    user: str
    uid: int
    gid: int


@dataclass(frozen=True)
class ShellLimits:
    memory_bytes: int = 0
    cpu_seconds: int = 0
    open_files: int = 0
    run_as: RunAs | None = None

    @classmethod
    def from_settings(cls, memory_mb: int, cpu_seconds: int, open_files: int, run_as_user: str) -> ShellLimits:
        for name, value in (
            ("O16N_SHELL_MEMORY_LIMIT_MB", memory_mb),
            ("O16N_SHELL_CPU_LIMIT_SECONDS", cpu_seconds),
            ("O16N_SHELL_OPEN_FILES_LIMIT", open_files),
        ):
            if value < 0:
                raise SettingsError(f"{name} must be 0 (unlimited) or positive, got {value}")
        return cls(
            memory_bytes=memory_mb * 1024 * 1024,
            cpu_seconds=cpu_seconds,
            open_files=open_files,
            run_as=resolve_user(run_as_user) if run_as_user else None,
        )

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, limit) pairs to set; soft and hard limits are both set to `limit`."""
        pairs = [
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NOFILE, self.open_files),
        ]
        return [(which, value) for which, value in pairs if value > 0]

    def preexec(self) -> Callable[[], None]:
        """The function the forked child runs before exec.

        It makes the shell a child subreaper (so processes its code forks and orphans, e.g.
        `cmd &` through a shell, stay its children and it can see them left running) and sets
        the rlimits. It only calls prctl and setrlimit (no imports, no allocation-heavy work),
        as code between fork and exec must.
        """
        pairs = self.rlimits()
        setrlimit = resource.setrlimit
        getrlimit = resource.getrlimit
        infinity = resource.RLIM_INFINITY
        prctl = _libc_prctl()

        def apply() -> None:
            if prctl is not None:
                prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            for which, value in pairs:
                _, hard = getrlimit(which)
                limit = value if hard == infinity else min(value, hard)
                setrlimit(which, (limit, limit))

        return apply


_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent (never between fork and exec); None off Linux."""
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def shell_limits(settings: ComputeNodeSettings) -> ShellLimits:
    return ShellLimits.from_settings(
        settings.shell_memory_limit_mb,
        settings.shell_cpu_limit_seconds,
        settings.shell_open_files_limit,
        settings.shell_run_as_user,
    )


def resolve_user(name: str) -> RunAs:
    """The account named by O16N_SHELL_RUN_AS_USER; a startup error if it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SettingsError(f"O16N_SHELL_RUN_AS_USER: no such user {name!r}") from None
    if entry.pw_uid == 0:
        raise SettingsError("O16N_SHELL_RUN_AS_USER must name an unprivileged user, not root")
    return RunAs(user=name, uid=entry.pw_uid, gid=entry.pw_gid)
