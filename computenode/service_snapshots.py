"""A service's own snapshot, handed to each shell that loads the service.

A definition with `snapshot_id` names a zip the web node put in this node's snapshot cache
(computenode/sessions.py SnapshotCache) before LoadService. When a shell loads the service,
the node extracts that zip (the same extraction as a session's snapshot load) into a staging
directory beside the shell's working directory, owned by the shell's user (the cache itself
is private to the node), and the shell restores from it before initCode: workspace objects
into the service's namespace, then the files into its working directory
(python_child.py / r_child.py). The staging directory is removed once the shell answered.

A zip missing from the cache (evicted, or the node's data directory was wiped) is
ServiceNotLoaded: the web node sends the zip again and reloads the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from common.errors import ServiceNotLoaded
from common.pb import compute_pb2 as pb
from computenode.sessions import IMAGE_NAMES, SnapshotCache, _extract_zip
from computenode.shells.process import ShellProcess


@contextlib.asynccontextmanager
async def staged(
    shell: ShellProcess, definition: pb.ServiceDefinition, cache: SnapshotCache | None
) -> AsyncIterator[dict[str, str] | None]:
    """The `snapshot` part of the shell's load request ({"image", "files"}), None without a snapshot."""
    if not definition.snapshot_id:
        yield None
        return
    zip_path = cache.path(definition.snapshot_id) if cache is not None else None
    if zip_path is None:
        raise ServiceNotLoaded(
            f"service {definition.key}: its snapshot {definition.snapshot_id} is not in this compute node's cache"
        )
    runtime = shell.spec.runtime
    staging = shell.root.with_name(shell.root.name + ".snapshot")
    run_as = shell.limits.run_as
    owner = (run_as.uid, run_as.gid) if run_as is not None else None
    try:
        try:
            image = await asyncio.to_thread(_stage, zip_path, runtime, staging, owner)
        except FileNotFoundError:  # evicted from the cache just now
            raise ServiceNotLoaded(
                f"service {definition.key}: its snapshot {definition.snapshot_id} left this compute node's cache"
            ) from None
        yield {"image": str(image) if image.exists() else "", "files": str(staging / "files")}
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)


def _stage(zip_path: Path, runtime: str, staging: Path, owner: tuple[int, int] | None) -> Path:
    shutil.rmtree(staging, ignore_errors=True)
    files = staging / "files"
    files.mkdir(mode=0o700, parents=True)
    os.chmod(staging, 0o700)  # mkdir's mode is masked by the umask
    image = staging / IMAGE_NAMES[runtime]
    _extract_zip(zip_path, runtime, image, files)
    if owner is not None:  # the shell's user reads the image and moves the files into its working directory
        for directory, _dirs, names in os.walk(staging):
            os.chown(directory, *owner)
            for name in names:
                os.chown(os.path.join(directory, name), *owner)
    return image
