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
the pool replaces the shell, killing its process group, or its cgroup: computenode/cgroups.py).

`run_as_user` names an unprivileged account the shells run as (the compute node must run
as root to use it); their working directories are then owned by that user, and the user
must be able to run the shells' interpreter (`O16N_SHELL_PYTHON`, a virtualenv outside
/root with o16n installed) and reach the data directory: `check_shell_interpreter` proves
both at start by running the interpreter as that user, a SettingsError otherwise.
`seal_data_dir` then leaves the data directory traversable but not readable, and everything
in it but `shells/` and `sessions/` private to the node.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import os
import pwd
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.settings import SettingsError

if TYPE_CHECKING:
    from computenode.cgroups import Cgroups, ShellCgroup
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
    cgroups: Cgroups | None = None  # the node's cgroups, when shells get their own
    uids: UidRange | None = None  # a uid of its own for each shell (`run_as` is then set per shell)

    @classmethod
    def from_settings(
        cls, memory_mb: int, cpu_seconds: int, open_files: int, run_as_user: str, run_as_uids: str = ""
    ) -> ShellLimits:
        for name, value in (
            ("O16N_SHELL_MEMORY_LIMIT_MB", memory_mb),
            ("O16N_SHELL_CPU_LIMIT_SECONDS", cpu_seconds),
            ("O16N_SHELL_OPEN_FILES_LIMIT", open_files),
        ):
            if value < 0:
                raise SettingsError(f"{name} must be 0 (unlimited) or positive, got {value}")
        if run_as_user and run_as_uids:
            raise SettingsError("set O16N_SHELL_RUN_AS_USER or O16N_SHELL_RUN_AS_UIDS, not both")
        return cls(
            memory_bytes=memory_mb * 1024 * 1024,
            cpu_seconds=cpu_seconds,
            open_files=open_files,
            run_as=resolve_user(run_as_user) if run_as_user else None,
            uids=UidRange.parse(run_as_uids) if run_as_uids else None,
        )

    @property
    def other_user(self) -> RunAs | None:
        """A user the shells run as, when not the node's own (what the start-up checks run as)."""
        if self.run_as is None and self.uids is not None:
            return self.uids.sample()
        return self.run_as

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, limit) pairs to set; soft and hard limits are both set to `limit`."""
        pairs = [
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NOFILE, self.open_files),
        ]
        return [(which, value) for which, value in pairs if value > 0]

    def preexec(self, cgroup: ShellCgroup | None = None) -> Callable[[], None]:
        """The function the forked child runs before exec.

        It joins the shell's cgroups (before anything can fork), makes the shell a child
        subreaper (so processes its code forks and orphans, e.g. `cmd &` through a shell, stay
        its children and it can see them left running), sets the rlimits, and last drops to
        the run-as user (joining a cgroup needs root, so subprocess's own `user=`, applied
        before this function, cannot be used). It only makes system calls (no imports, no
        allocation-heavy work), as code between fork and exec must.
        """
        pairs = self.rlimits()
        setrlimit = resource.setrlimit
        getrlimit = resource.getrlimit
        infinity = resource.RLIM_INFINITY
        prctl = _libc_prctl()
        procs = [os.fsencode(path) for path in cgroup.procs_files] if cgroup is not None else []
        run_as = self.run_as

        def apply() -> None:
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            if prctl is not None:
                prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            for which, value in pairs:
                _, hard = getrlimit(which)
                limit = value if hard == infinity else min(value, hard)
                setrlimit(which, (limit, limit))
            if run_as is not None:
                os.setgroups([])
                os.setresgid(run_as.gid, run_as.gid, run_as.gid)
                os.setresuid(run_as.uid, run_as.uid, run_as.uid)

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


def shell_limits(settings: ComputeNodeSettings, cgroups: Cgroups | None = None) -> ShellLimits:
    limits = ShellLimits.from_settings(
        settings.shell_memory_limit_mb,
        settings.shell_cpu_limit_seconds,
        settings.shell_open_files_limit,
        settings.shell_run_as_user,
        settings.shell_run_as_uids,
    )
    return dataclasses.replace(limits, cgroups=cgroups)


class UidRange:
    """O16N_SHELL_RUN_AS_UIDS: each live shell runs as a uid of its own (gid the same number).

    Shells then cannot read each other's working directories even knowing the path, nor
    signal or trace each other. A uid is taken when a shell starts and given back once the
    shell is gone and its directory removed; a uid with a process still running (left
    behind without cgroups) is not handed out again.
    """

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self._used: set[int] = set()

    @classmethod
    def parse(cls, text: str) -> UidRange:
        first, sep, last = text.partition("-")
        if not (sep and first.strip().isdigit() and last.strip().isdigit()):
            raise SettingsError(f"O16N_SHELL_RUN_AS_UIDS must be FIRST-LAST (e.g. 200000-200999), got {text!r}")
        low, high = int(first), int(last)
        if low < 1000 or high < low:
            raise SettingsError(f"O16N_SHELL_RUN_AS_UIDS: {text!r} must be a range of uids from 1000 up, FIRST <= LAST")
        return cls(low, high)

    def sample(self) -> RunAs:
        return self._run_as(self.first)

    def take(self) -> RunAs:
        busy = self._used | _uids_running()
        for uid in range(self.first, self.last + 1):
            if uid not in busy:
                self._used.add(uid)
                return self._run_as(uid)
        raise OSError(f"no free uid in O16N_SHELL_RUN_AS_UIDS ({self.first}-{self.last}): more shells than uids")

    def give_back(self, run_as: RunAs) -> None:
        self._used.discard(run_as.uid)

    @staticmethod
    def _run_as(uid: int) -> RunAs:
        return RunAs(user=f"o16n-shell-{uid}", uid=uid, gid=uid)


def _uids_running() -> set[int]:
    """The real uids of every process on the host (from /proc/<pid>/status: shells are non-dumpable,
    so the owner of /proc/<pid> says root)."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            found.add(int(line.split()[1]))
                            break
            except (OSError, ValueError, IndexError):
                continue
    return found


def resolve_user(name: str) -> RunAs:
    """The account named by O16N_SHELL_RUN_AS_USER; a startup error if it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SettingsError(f"O16N_SHELL_RUN_AS_USER: no such user {name!r}") from None
    if entry.pw_uid == 0:
        raise SettingsError("O16N_SHELL_RUN_AS_USER must name an unprivileged user, not root")
    return RunAs(user=name, uid=entry.pw_uid, gid=entry.pw_gid)


# A shell reaches its working directory by path, and imports computenode/shells/python_child.py
# and what it warms up.
_CHECK = "import os; os.listdir(os.getcwd()); import computenode.shells.python_child, numpy, pandas, dill"


async def check_shell_interpreter(python: str, run_as: RunAs | None, workdir: Path) -> None:
    """Run `python` as the shells will (their user, in a directory like theirs) and import what a shell imports.

    A SettingsError naming the interpreter, the user and the failure (e.g. Permission denied
    on an interpreter under /root, o16n not installed in it, a data directory the user cannot
    reach) instead of shells that fail to start one by one later.
    """
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if run_as is not None:
        os.chown(workdir, run_as.uid, run_as.gid)
    who = f"user {run_as.user!r}" if run_as else "the compute node's user"
    try:
        proc = await asyncio.create_subprocess_exec(
            python,
            "-c",
            _CHECK,
            cwd=str(workdir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=ShellLimits(run_as=run_as).preexec(),  # (uvloop has no user= argument)
        )
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    except OSError as exc:
        raise SettingsError(
            f"O16N_SHELL_PYTHON: {who} cannot run the shells' interpreter {python} in {workdir}: {exc}; "
            "use an interpreter (a virtualenv with o16n installed) that user can execute, in a directory it can reach"
        ) from None
    finally:
        os.rmdir(workdir)
    if proc.returncode != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise SettingsError(
            f"O16N_SHELL_PYTHON: the shells' interpreter {python}, run as {who} in {workdir}, fails: "
            f"{lines[-1] if lines else f'exit code {proc.returncode}'}; use an interpreter that user can execute, "
            "with o16n installed (pip install /path/to/o16n), and a data directory (O16N_DATA_DIR) it can reach"
        )


def hand_over(run_as: RunAs | None, path: Path) -> None:
    """Give what the node wrote into a shell's working directory (uploads, a restored snapshot) to the shell's user.

    `path` and, for a directory, everything below it; symbolic links are changed themselves,
    never followed (the shell's user can make links there).
    """
    if run_as is None:
        return
    os.lchown(path, run_as.uid, run_as.gid)
    if path.is_dir() and not path.is_symlink():
        for directory, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(directory, name), run_as.uid, run_as.gid)


def seal_data_dir(data_dir: Path, open_to: tuple[str, ...] = ("shells", "sessions")) -> None:
    """With shells as another user: the data directory traversable only, all in it but `open_to` private.

    Shells reach their own 0700 directories under shells/ and sessions/, but can list
    neither those nor the data directory, and cannot read the snapshot cache, realtime
    models or logs.
    """
    data_dir.chmod(0o711)
    for entry in data_dir.iterdir():
        if entry.is_symlink():
            continue
        if entry.is_dir():
            entry.chmod(0o711 if entry.name in open_to else 0o700)
        else:
            entry.chmod(entry.stat().st_mode & 0o700)
