"""CPU time spent by each process of a stack while a load runs: where a request's cost goes.

`/proc/<pid>/stat` utime + stime of a process (and, for a compute node, of its shells, which
come and go: shells replaced during the load count from when they are first seen).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)


def context_switches(pid: int | str) -> int:
    """Voluntary + involuntary context switches of every thread of `pid` ("self" for this process)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@dataclass
class Usage:
    """CPU seconds per role (e.g. "web node", "compute node", "shells") during one measured run."""

    seconds: dict[str, float] = field(default_factory=dict)

    def per_request_us(self, requests: int) -> dict[str, float]:
        return {role: s * 1e6 / requests for role, s in self.seconds.items()} if requests else {}


@contextmanager
def measure(roles: dict[str, Callable[[], list[int]]]) -> Iterator[Usage]:
    """CPU seconds of each role's processes (listed by a callable, read before and after)."""
    before = {role: {pid: cpu_seconds(pid) for pid in pids()} for role, pids in roles.items()}
    usage = Usage()
    yield usage
    for role, pids in roles.items():
        total = 0.0
        for pid in pids():
            total += cpu_seconds(pid) - before[role].get(pid, 0.0)
        usage.seconds[role] = total
