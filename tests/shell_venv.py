"""An interpreter another OS user can run shells with (tests of O16N_SHELL_RUN_AS_USER and O16N_SHELL_PYTHON).

The test venv's interpreter lives under /root (0700 on this machine) and a CI clone is made
by `mktemp -d` (0700 too), so `nobody` can run neither. This builds, once, a virtualenv
from Debian's /usr/bin/python3 under /var/cache/o16n-tests (world-readable) with what a
shell imports, pinned to this venv's versions (numpy, pandas, dill, orjson; rpy2 for R
shells), and copies the project's `common` and `computenode` packages into it, again
whenever their source changes. A file lock serialises test sessions running at once.

Run `python -m tests.shell_venv` to build it ahead (the Makefile's `shell-venv` target).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

CACHE = Path("/var/cache/o16n-tests")
BASE_PYTHON = "/usr/bin/python3"
PACKAGES = ("numpy", "pandas", "dill", "orjson", "rpy2", "rpy2-robjects", "rpy2-rinterface")
PROJECT = Path(__file__).resolve().parent.parent
SOURCES = ("common", "computenode")


def shell_python() -> str:
    """The venv's interpreter, built or refreshed as needed; every directory on its way is world-readable."""
    pins = [f"{name}=={version(name)}" for name in PACKAGES]
    base = subprocess.run(
        [BASE_PYTHON, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout
    key = hashlib.sha256("\n".join([base, *pins]).encode()).hexdigest()[:12]
    venv = CACHE / f"shell-venv-{key}"
    old_umask = os.umask(0o022)
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        CACHE.chmod(0o755)
        with _locked(CACHE / ".lock"):
            if not (venv / ".stamp").exists():
                shutil.rmtree(venv, ignore_errors=True)
                subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True)
                pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                subprocess.run([*pip, *pins], check=True)
                (venv / ".stamp").touch()
            _sync_project(venv)
    finally:
        os.umask(old_umask)
    return str(venv / "bin" / "python")


def _sync_project(venv: Path) -> None:
    """Copy the project's packages into the venv when their source differs from the last copy."""
    files = sorted(p for name in SOURCES for p in (PROJECT / name).rglob("*") if _wanted(p))
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes())
    stamp = venv / ".project"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for name in SOURCES:
        fresh = site / f".{name}.new"
        shutil.rmtree(fresh, ignore_errors=True)
        for path in files:
            relative = path.relative_to(PROJECT)
            if relative.parts[0] == name:
                target = fresh / relative.relative_to(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)  # modes from the umask, not from a 0700 clone
        shutil.rmtree(site / name, ignore_errors=True)
        fresh.rename(site / name)
    stamp.write_text(digest.hexdigest())


def _wanted(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".sql", ".pyi", ".typed")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


if __name__ == "__main__":
    print(shell_python())
