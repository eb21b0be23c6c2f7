"""Child processes a shell's user code left behind (run inside the shell children)."""

from __future__ import annotations

import os


def live_children() -> int:
    """Reap finished child processes; 1 if any is still running, else 0.

    Shells are child subreapers (computenode/limits.py), so this also sees what user code
    orphaned (`cmd &`). A non-zero answer makes the compute node replace the shell, which
    kills its process group.
    """
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid == 0:
            return 1
