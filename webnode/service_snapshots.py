"""A published service's own snapshot, restored in each shell before its initCode.

A service published with `snapshotId` keeps a copy of that snapshot's zip (routes/services.py).
For a Python service, the definition sent to compute nodes gets an init prelude: Python code,
run in the shell where initCode runs, that writes the snapshot's working-directory files and
loads its workspace objects (dill, as saved by a session) into the service's namespace. The
web node never unpickles anything; the zip travels as a base64 literal inside the prelude.

Zip layout (computenode/sessions.py): manifest.json, workspace.dill (a pickle of
{name: dill bytes}), files/<relative path>.
"""

from __future__ import annotations

import base64
import io
import pickle
import zipfile

WORKSPACE = "workspace.dill"
_EMPTY_WORKSPACE = pickle.dumps({}, protocol=4)

_PRELUDE = """def _o16n_restore_snapshot(blob):
    import base64, io, os, pickle, zipfile
    import dill
    root = os.path.realpath(os.getcwd())
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(blob))) as zf:
        # Objects first: unpickling a saved file handle (dill) reopens and may truncate its file.
        if "workspace.dill" in zf.namelist():
            image = pickle.loads(zf.read("workspace.dill"))
            globals().update({name: dill.loads(value) for name, value in image.items()})
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith("files/"):
                continue
            target = os.path.realpath(os.path.join(root, info.filename[len("files/"):]))
            if not target.startswith(root + os.sep):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as out:
                out.write(zf.read(info))
_o16n_restore_snapshot("%s")
del _o16n_restore_snapshot
"""


def python_prelude(content: bytes) -> str:
    """Python code restoring the snapshot `content` (a zip) into the namespace it runs in."""
    return _PRELUDE % base64.b64encode(content).decode()


def is_empty(content: bytes) -> bool:
    """True for the snapshot of a session holding nothing (no objects, no files).

    Microsoft's client redeploys with such a snapshot when only metadata changes; the
    service then keeps the objects it has instead of losing them.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            names = zf.namelist()
            if b'"python"' not in zf.read("manifest.json"):
                return False  # R workspaces are not inspected: always taken
            if any(name.startswith("files/") and not name.endswith("/") for name in names):
                return False
            return WORKSPACE not in names or zf.read(WORKSPACE) == _EMPTY_WORKSPACE
    except (zipfile.BadZipFile, KeyError):
        return False
