"""A published service's own snapshot, restored in each shell before its initCode.

A service published with `snapshotId` keeps a copy of that snapshot's zip (routes/services.py).
The definition sent to compute nodes gets an init prelude in the service's language, run in
the shell where initCode runs, that loads the snapshot's workspace objects into the service's
namespace (dill for Python, RData for R, as saved by a session) and writes its working-directory
files. The web node never unpickles anything; the zip travels as a literal inside the prelude
(base64 for Python, hex for R, which base R can decode), so it suits snapshots of modest size.

Zip layout (computenode/sessions.py): manifest.json, workspace.dill (a pickle of
{name: dill bytes}) or workspace.RData, files/<relative path>.
"""

from __future__ import annotations

import base64
import io
import pickle
import zipfile

WORKSPACE = "workspace.dill"
# The prelude travels inside the service definition (and the shell protocol's 64 MiB frame header):
# 24 MiB of zip is at most 48 MiB of hex.
MAX_SIZE = 24 * 1024 * 1024
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


_R_PRELUDE = r""".o16n_hex <- "%s"
.o16n_zip <- tempfile(fileext = ".zip")
.o16n_dir <- tempfile()
.o16n_n <- nchar(.o16n_hex)
.o16n_raw <- as.raw(strtoi(substring(.o16n_hex, seq(1L, .o16n_n, 2L), seq(2L, .o16n_n, 2L)), 16L))
writeBin(.o16n_raw, .o16n_zip)
utils::unzip(.o16n_zip, exdir = .o16n_dir)
.o16n_image <- file.path(.o16n_dir, "workspace.RData")
if (file.exists(.o16n_image)) load(.o16n_image, envir = environment())
for (.o16n_f in list.files(file.path(.o16n_dir, "files"), recursive = TRUE, all.files = TRUE)) {
  dir.create(dirname(.o16n_f), recursive = TRUE, showWarnings = FALSE)
  file.copy(file.path(.o16n_dir, "files", .o16n_f), .o16n_f, overwrite = TRUE)
}
unlink(c(.o16n_zip, .o16n_dir), recursive = TRUE)
rm(list = ls(all.names = TRUE, pattern = "^[.]o16n_"))
"""


def prelude(runtime: str, content: bytes) -> str:
    """Code in the service's runtime that restores the snapshot `content` before its initCode."""
    return python_prelude(content) if runtime == "Python" else r_prelude(content)


def r_prelude(content: bytes) -> str:
    """R code restoring the snapshot `content` (a zip) into the environment it runs in (hex: base R decodes it)."""
    return _R_PRELUDE % content.hex()


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
