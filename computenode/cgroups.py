"""Shell containment by cgroup: a shell and everything it forks, wherever it goes.

A process group does not hold a shell's processes: user code can `os.setsid()` and fork,
and its children then survive a kill of the group. A cgroup does: a process cannot leave
it, and what it forks is born in it. So, when `O16N_SHELL_CGROUP=auto` and the cgroup
file system is writable (the compute node runs as root), each shell gets its own cgroup:

- in the cgroup v2 hierarchy (mounted at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a
  hybrid host): `cgroup.kill` kills every process in it at once;
- in the cgroup v1 `pids` hierarchy when mounted (else v2's `pids` controller when it can
  be enabled): `pids.max` caps its processes and threads (`O16N_SHELL_PIDS_LIMIT`), so a
  fork bomb fails with EAGAIN inside the shell instead of exhausting the machine.

Shell cgroups live under a per-node parent, `o16n-node-<pid namespace>-<pid>`, made beside the compute
node's own cgroup in each hierarchy (so the host's accounting still covers the shells). A
shell joins its cgroups in the forked child before exec (computenode/limits.py). Killing a
shell kills its cgroup; when the shell is gone its cgroup is removed, and the parent when
the node stops. Parents left by a node that died (its pid no longer runs) are emptied and
removed at start: so a node that was killed takes the processes its shells left with it,
at the latest when a node starts again. Without a writable cgroup file system the node logs why and falls back
to process groups.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from common.settings import SettingsError

logger = logging.getLogger(__name__)
PARENT_PREFIX = "o16n-node-"


@dataclass(frozen=True)
class ShellCgroup:
    """The cgroups of one shell (one directory per hierarchy)."""

    dirs: tuple[Path, ...]
    killable: bool  # the v2 directory has cgroup.kill

    @property
    def procs_files(self) -> list[str]:
        """The cgroup.procs files the child writes "0" to (joining itself) before exec."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(line) for line in (d / "cgroup.procs").read_text().split())
        return found

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (v2 cgroup.kill, else one by one until none is left)."""
        if self.killable:
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
                return
        for _ in range(100):  # processes forked meanwhile are caught on the next pass
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def try_remove(self) -> bool:
        """Kill what is left and remove the directories; False while one is still busy."""
        self.kill()
        busy = False
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                busy = True
        return not busy

    def remove(self, wait: float = 5.0) -> bool:
        """try_remove until it succeeds (blocking; for start and shutdown), False after `wait` s."""
        deadline = time.monotonic() + wait
        while not self.try_remove():
            if time.monotonic() > deadline:
                logger.warning("could not remove cgroup %s: processes are still leaving it", self.dirs)
                return False
            time.sleep(0.01)
        return True


class Cgroups:
    """This node's parent cgroups; `create` makes one shell's cgroup under them."""

    def __init__(self, v2: Path | None, pids: Path | None, pids_limit: int) -> None:
        self.v2 = v2  # the node's parent in the v2 hierarchy
        self.pids_parent = pids  # where pids.max is set: a v1 pids parent, or the v2 parent
        self.pids_limit = pids_limit
        self._ids = 0

    @classmethod
    def setup(cls, mode: str, pids_limit: int) -> Cgroups | None:
        """The node's cgroups per `O16N_SHELL_CGROUP`; None (logged) when off or not writable."""
        if mode == "off":
            if pids_limit:
                raise SettingsError("O16N_SHELL_PIDS_LIMIT needs O16N_SHELL_CGROUP=auto")
            return None
        v2_root, pids_root = own_cgroups()
        if v2_root is None:
            _unavailable("no cgroup v2 hierarchy is mounted", pids_limit)
            return None
        name = parent_name(os.getpid())
        try:
            _remove_stale(v2_root)
            v2 = v2_root / name
            v2.mkdir(exist_ok=True)
            pids = None
            if pids_root is not None:
                _remove_stale(pids_root)
                pids = pids_root / name
                pids.mkdir(exist_ok=True)
            elif "pids" in (v2 / "cgroup.controllers").read_text().split():
                with contextlib.suppress(OSError):
                    (v2 / "cgroup.subtree_control").write_text("+pids")
                    pids = v2
        except OSError as exc:
            _unavailable(f"cannot create cgroups under {v2_root}: {exc.strerror}", pids_limit)
            return None
        if pids_limit and pids is None:
            raise SettingsError("O16N_SHELL_PIDS_LIMIT: no pids cgroup controller is available on this host")
        logger.info(
            "shells run in their own cgroups under %s%s",
            v2,
            f" (pids.max {pids_limit} via {pids})" if pids_limit else "",
        )
        return cls(v2, pids, pids_limit)

    def create(self, label: str) -> ShellCgroup:
        """A new, empty cgroup for one shell (`label` names it, e.g. python-12)."""
        assert self.v2 is not None
        self._ids += 1
        name = f"{label}-{self._ids}"
        v2 = self.v2 / name
        v2.mkdir()
        dirs = [v2]
        if self.pids_parent is not None and self.pids_parent != self.v2:
            dirs.append(self.pids_parent / name)
            dirs[-1].mkdir()
        if self.pids_limit and self.pids_parent is not None:
            (self.pids_parent / name / "pids.max").write_text(str(self.pids_limit))
        return ShellCgroup(tuple(dirs), killable=(v2 / "cgroup.kill").exists())

    def close(self) -> None:
        """Remove the node's parents (their shells' cgroups are emptied and removed first)."""
        for parent in {p for p in (self.v2, self.pids_parent) if p is not None}:
            _remove_tree(parent)


def _unavailable(reason: str, pids_limit: int) -> None:
    """Log the fallback to process groups; a SettingsError when a pids limit was asked for."""
    if pids_limit:
        raise SettingsError(f"O16N_SHELL_PIDS_LIMIT needs cgroups, but {reason}")
    logger.warning("%s: shells are contained by process group only (O16N_SHELL_CGROUP)", reason)


def own_cgroups(mounts: str = "/proc/self/mounts", own: str = "/proc/self/cgroup") -> tuple[Path | None, Path | None]:
    """(the node's own cgroup in the v2 hierarchy, its own cgroup in the v1 pids hierarchy), each if mounted."""
    v2_mount = pids_mount = None
    with open(mounts) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 4:
                continue
            if fields[2] == "cgroup2" and v2_mount is None:
                v2_mount = Path(fields[1])
            elif fields[2] == "cgroup" and "pids" in fields[3].split(","):
                pids_mount = Path(fields[1])
    v2_path = pids_path = "/"
    with open(own) as f:
        for line in f:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0":
                v2_path = path
            elif "pids" in controllers.split(","):
                pids_path = path
    return (
        v2_mount / v2_path.lstrip("/") if v2_mount else None,
        pids_mount / pids_path.lstrip("/") if pids_mount else None,
    )


def parent_name(pid: int) -> str:
    """The per-node parent's name: the node's pid, qualified by its pid namespace (a cgroup file
    system may be shared by containers, whose pids mean nothing here)."""
    return f"{PARENT_PREFIX}{_pid_namespace()}-{pid}"


def _pid_namespace() -> str:
    try:
        return "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit()) or "0"
    except OSError:
        return "0"


def _remove_stale(root: Path) -> None:
    """Empty and remove parents left by compute nodes of this pid namespace that died (their pid no longer runs)."""
    for parent in root.glob(f"{PARENT_PREFIX}{_pid_namespace()}-*"):
        pid = parent.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            logger.warning("removing cgroup %s left by a compute node that is gone", parent)
            _remove_tree(parent)


def _remove_tree(parent: Path) -> None:
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            if child.is_dir():
                ShellCgroup((child,), killable=(child / "cgroup.kill").exists()).remove(wait=2.0)
        ShellCgroup((parent,), killable=(parent / "cgroup.kill").exists()).remove(wait=2.0)
