"""Process hygiene run inside the shell children: what user code left behind, and privacy."""

from __future__ import annotations

import ctypes
import os
import socket

_PR_SET_DUMPABLE = 4


def keep_socket_to_self(sock: socket.socket) -> None:
    """Keep the shell's socket out of the processes its user code starts.

    Not inherited across exec (`system('cmd &')`), and closed in a child forked without exec
    (os.fork): otherwise a child that outlives a crashed shell holds the socket open, and the
    compute node, which learns of the crash by the socket closing, would wait for a reply.
    """
    os.set_inheritable(sock.fileno(), False)
    os.register_at_fork(after_in_child=sock.close)


def keep_private() -> None:
    """Make the shell non-dumpable, so shells of the same OS user cannot reach into it.

    /proc/<pid>/cwd, /environ, /fd, /mem of a non-dumpable process are root's, and it cannot
    be ptraced by its user: with shells as one O16N_SHELL_RUN_AS_USER, a shell cannot follow
    another's /proc/<pid>/cwd into its working directory. (The flag is reset by exec, so the
    shell sets it itself; user code can only reopen its own shell.)
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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
