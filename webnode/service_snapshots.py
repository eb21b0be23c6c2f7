"""A published service's own snapshot: what the web node decides about it.

A service published with `snapshotId` keeps a copy of that snapshot's zip (routes/services.py);
its definition names the copy (`snapshot_id`), the cluster puts the zip in a compute node's
snapshot cache before loading the service there (webnode/compute/cluster.py), and each shell
that loads the service restores it before initCode (computenode/service_snapshots.py). The web
node never unpickles anything; it only recognises the snapshot of an empty session here.

Zip layout (computenode/sessions.py): manifest.json, workspace.dill (a pickle of
{name: dill bytes}) or workspace.RData, files/<relative path>.
"""

from __future__ import annotations

import io
import pickle
import zipfile

WORKSPACE = "workspace.dill"
_EMPTY_WORKSPACE = pickle.dumps({}, protocol=4)


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
