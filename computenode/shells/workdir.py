"""Working-directory bookkeeping shared by the shell children: changed files, output files, cleanup."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

Listing = dict[str, tuple[int, int]]


def listing(root: str) -> Listing:
    """{relative path: (mtime_ns, size)} of every file below `root`."""
    found: Listing = {}
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                found[os.path.relpath(entry.path, root)] = (st.st_mtime_ns, st.st_size)
    return found


def changed(before: Listing, after: Listing) -> list[str]:
    return sorted(name for name, sig in after.items() if before.get(name) != sig)


def read_outputs(root: str, names: list[str]) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    base = Path(root).resolve()
    for name in names:
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            out.append((name, None))
            continue
        out.append((name, path.read_bytes()))
    return out


def restore(root: str, keep: Listing) -> None:
    """Remove what a request added or changed below `root`, keeping the files in `keep` as they were."""
    now = listing(root)
    for name, sig in now.items():
        if keep.get(name) != sig:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False) and not any(k.startswith(entry.name + os.sep) for k in keep):
            shutil.rmtree(entry.path, ignore_errors=True)
