"""Working-directory bookkeeping shared by the shell children: changed files, output files, cleanup."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

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


def adopt(source: str, root: str) -> None:
    """Move every file below `source` to the same relative path below `root` (a snapshot's files)."""
    for name in listing(source):
        target = os.path.join(root, name)
        os.makedirs(os.path.dirname(target) or root, exist_ok=True)
        shutil.move(os.path.join(source, name), target)


def service_reply(
    root: str,
    keep: Listing,
    *,
    ok: bool,
    error: str,
    console: str,
    changed: list[str],
    outputs: dict[str, Any],
    output_files: list[str],
    strays: Any,
) -> tuple[dict[str, Any], list[bytes]]:
    """The reply to a service execution (both shells): outputs JSON, then each declared output file.

    Reads the output files, then puts the working directory back as `keep` when the code changed it.
    """
    from common import values

    files = read_outputs(root, output_files) if output_files else []
    if changed:
        restore(root, keep)
    reply: dict[str, Any] = {
        "ok": True,
        "success": ok,
        "error": error,
        "console": console,
        "changed": changed,
        "files": [[name, content is not None] for name, content in files],
        "strays": strays,
    }
    try:
        out = values.dumps(outputs) if ok else b"{}"
    except TypeError as exc:
        reply.update(success=False, error=f"outputs cannot be encoded as JSON: {exc}")
        out = b"{}"
    return reply, [out, *(content or b"" for _, content in files)]
