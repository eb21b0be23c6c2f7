"""Remote sessions on this compute node: one dedicated shell each, plus the snapshot cache.

A session takes a warm shell from its runtime's pool for its whole life and gives it back
as broken when it closes (the pool starts a fresh one). Each session has a private home
directory beside the shells (console file, workspace images), never inside its working
directory. One shell request at a time: while code executes, `execute`, workspace and
snapshot calls get Conflict (409); files, console output, history and cancel still work.
A session whose shell died is dropped and answers Gone (410).

Snapshots are zips: `manifest.json`, the workspace image (`workspace.dill` for Python,
`workspace.RData` for R) and every working-directory file under `files/`. The node keeps
the zips it made or received in a cache by snapshot id (content never changes for an id),
so a snapshot is fetched from the central store at most once per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from common.errors import (
    AppError,
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    ShellCrashed,
    Timeout,
    Unavailable,
)
from common.pb import compute_pb2 as pb
from computenode.limits import hand_over
from computenode.pools import ShellPool
from computenode.shells import workdir
from computenode.shells.process import ShellProcess

logger = logging.getLogger(__name__)
CHUNK = 1 << 20
SHELL_OP_TIMEOUT = 600.0
IMAGE_NAMES = {"python": "workspace.dill", "r": "workspace.RData"}


def check_file_name(name: str) -> str:
    """A plain file name inside the working directory, or InvalidInput."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or len(name.encode()) > 255:
        raise InvalidInput(
            f"{name!r} is not a plain file name inside the session's working directory", field="fileName"
        )
    return name


@dataclass
class Session:
    id: str
    runtime: str
    shell: ShellProcess
    home: Path
    idle_timeout: float
    last_used: float = field(default_factory=time.monotonic)
    history: list[str] = field(default_factory=list)
    last_console: str = ""
    running: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def workdir(self) -> Path:
        return self.shell.root

    @property
    def console_path(self) -> Path:
        return self.home / "console.txt"


class SessionRegistry:
    def __init__(self, pools: dict[str, ShellPool], *, root: Path, cache_dir: Path, cache_bytes: int) -> None:
        self._pools = pools
        self._root = root
        self._cache = SnapshotCache(cache_dir, cache_bytes)
        self._sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._teardowns: set[asyncio.Task[None]] = set()  # shells of closed sessions, being stopped

    @property
    def cache(self) -> SnapshotCache:
        return self._cache

    def start(self) -> None:
        # Sessions do not survive a restart: drop what an earlier run left behind.
        shutil.rmtree(self._root, ignore_errors=True)
        self._root.mkdir(parents=True, exist_ok=True)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session_id in list(self._sessions):
            await self.close_session(session_id, force=True)
        if self._teardowns:
            await asyncio.gather(*self._teardowns, return_exceptions=True)

    def ids(self) -> list[str]:
        """Live sessions; one whose shell died meanwhile is dropped here."""
        for session in list(self._sessions.values()):
            if session.shell.poll() is not None:
                self._drop(session)
        return list(self._sessions)

    # ------------------------------------------------------------------ lifecycle
    async def create(self, session_id: str, runtime: str, idle_timeout: float) -> None:
        pool = self._pools.get(runtime)
        if pool is None:
            raise Unavailable(f"the {runtime} runtime is not available on this compute node")
        if session_id in self._sessions:
            raise Conflict(f"session {session_id} exists")
        shell = await pool.acquire()
        shell.loaded_key = None
        home = self._root / session_id
        session = Session(session_id, runtime, shell, home, idle_timeout)
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            if shell.limits.run_as is not None:  # the shell writes its console and workspace images here
                os.chown(home, shell.limits.run_as.uid, shell.limits.run_as.gid)
            reply, _ = await shell.request(
                {"op": "session_open", "console_path": str(session.console_path)}, timeout=SHELL_OP_TIMEOUT
            )
            if not reply.get("ok"):
                raise ShellCrashed(f"the {runtime} shell could not open a session: {reply.get('error')}")
        except BaseException:
            await pool.release(shell, broken=True)
            shutil.rmtree(home, ignore_errors=True)
            raise
        self._sessions[session_id] = session
        pool.replenish()  # the session keeps its shell: warm another one for the next request

    async def close_session(self, session_id: str, *, force: bool) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise Gone(f"session {session_id} no longer exists on this compute node")
        # The session is gone from now on; its shell (never reused: it held a user's state) and
        # its directory go in the background, so closing answers at once.
        task = asyncio.get_running_loop().create_task(self._teardown(session, kill=force or session.running))
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    async def _teardown(self, session: Session, *, kill: bool) -> None:
        try:
            if kill:
                await session.shell.kill()
            session.shell.recycle_reason = "its session closed"  # it held the session's state: never reused
            await self._pools[session.runtime].release(session.shell)
        finally:
            await asyncio.to_thread(shutil.rmtree, session.home, True)

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise Gone(f"session {session_id} no longer exists on this compute node")
        if session.shell.poll() is not None:
            self._drop(session)
            raise Gone(f"the shell of session {session_id} exited; the session is closed")
        session.last_used = time.monotonic()
        return session

    def _drop(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        logger.warning("session %s lost its shell; closing it", session.id)

        async def release() -> None:
            await self._pools[session.runtime].release(session.shell, broken=True)
            await asyncio.to_thread(shutil.rmtree, session.home, True)

        asyncio.get_running_loop().create_task(release())

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if session.idle_timeout > 0 and not session.running and now - session.last_used > session.idle_timeout:
                    logger.info("closing session %s after %.0f s idle", session.id, now - session.last_used)
                    with contextlib.suppress(AppError):
                        await self.close_session(session.id, force=False)

    # ------------------------------------------------------------------ shell requests
    async def _request(
        self, session: Session, header: dict[str, Any], *blobs: bytes, timeout: float | None = SHELL_OP_TIMEOUT
    ) -> tuple[dict[str, Any], list[bytes]]:
        """One request to the session's shell; its death closes the session (Gone).

        If the caller is cancelled (the web node gave up), the shell still answers: that answer
        is read before the cancellation goes on, so the session's lock and busy flag stay held
        until then and the next request never reads a stale reply.
        """
        task = asyncio.ensure_future(session.shell.request(header, *blobs, timeout=timeout))
        try:
            reply, out = await asyncio.shield(task)
        except asyncio.CancelledError:
            while not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({task})
            if not task.cancelled() and isinstance(task.exception(), ShellCrashed | Timeout):
                self._drop(session)
            raise
        except (ShellCrashed, Timeout) as exc:
            self._drop(session)
            raise Gone(f"session {session.id} is gone: {exc.message}") from None
        session.last_used = time.monotonic()
        if not reply.get("ok"):
            message = str(reply.get("error") or "the shell refused the request")
            if reply.get("not_found"):
                raise NotFound(message)
            if reply.get("invalid"):
                raise InvalidInput(message)
            raise ShellCrashed(message)
        return reply, out

    @contextlib.asynccontextmanager
    async def _exclusive(self, session_id: str) -> AsyncIterator[Session]:
        session = self.get(session_id)
        if session.running:
            raise Conflict(f"session {session_id} is executing code; wait for it to finish or cancel it")
        async with session.lock:
            yield session

    async def execute(
        self, session_id: str, code: str, inputs_json: bytes, outputs: list[str]
    ) -> tuple[dict[str, Any], bytes]:
        session = self.get(session_id)
        if session.running or session.lock.locked():
            raise Conflict(f"session {session_id} is busy executing code; one execution at a time")
        async with session.lock:
            session.running = True
            session.history.append(code)
            try:
                reply, out = await self._request(
                    session,
                    {"op": "session_execute", "code": code, "outputs": outputs},
                    inputs_json,
                    timeout=None,
                )
            finally:
                session.running = False
            session.last_console = str(reply.get("console") or "")
        return reply, out[0] if out else b"[]"

    async def execute_result(
        self, session_id: str, code: str, inputs_json: bytes, outputs: list[str]
    ) -> pb.ExecutionResult:
        """`execute` as the ExecutionResult both the Sessions service and the Call stream answer with."""
        reply, out = await self.execute(session_id, code, inputs_json, outputs)
        changed = reply.get("changed") or []
        return pb.ExecutionResult(
            success=bool(reply.get("success")),
            error_message=str(reply.get("error") or ""),
            outputs_json=out,
            console_output=str(reply.get("console") or ""),
            changed_files=[str(c) for c in changed],
        )

    def cancel(self, session_id: str) -> None:
        session = self.get(session_id)
        if session.running:
            session.shell.interrupt()

    async def console_output(self, session_id: str) -> tuple[str, bool]:
        session = self.get(session_id)
        if session.running:
            text = await asyncio.to_thread(_read_text, session.console_path)
            return text, True
        return session.last_console, False

    def history(self, session_id: str) -> list[str]:
        return list(self.get(session_id).history)

    # ------------------------------------------------------------------ workspace objects
    async def list_objects(self, session_id: str) -> list[str]:
        async with self._exclusive(session_id) as session:
            reply, _ = await self._request(session, {"op": "session_objects"})
        return [str(n) for n in reply.get("names", [])]

    async def get_object(self, session_id: str, name: str) -> bytes:
        async with self._exclusive(session_id) as session:
            _, out = await self._request(session, {"op": "session_object_get", "name": name})
        return out[0] if out else b""

    async def put_object(self, session_id: str, name: str, blob: bytes) -> None:
        async with self._exclusive(session_id) as session:
            await self._request(session, {"op": "session_object_put", "name": name}, blob)

    async def delete_object(self, session_id: str, name: str) -> None:
        async with self._exclusive(session_id) as session:
            await self._request(session, {"op": "session_object_delete", "name": name})

    # ------------------------------------------------------------------ files
    def list_files(self, session_id: str) -> list[str]:
        root = self.get(session_id).workdir
        return sorted(e.name for e in os.scandir(root) if e.is_file(follow_symlinks=False))

    def file_path(self, session_id: str, name: str, *, existing: bool) -> Path:
        """The path of `name` in the session's working directory, never outside it."""
        root = self.get(session_id).workdir.resolve()
        path = root / check_file_name(name)
        if existing and (not path.resolve().is_relative_to(root) or not path.is_file()):
            raise NotFound(f"file '{name}' not found in the session's working directory")
        return path

    def hand_over(self, session_id: str, path: Path) -> None:
        """A file the node wrote into the session's working directory now belongs to the shell's user."""
        hand_over(self.get(session_id).shell.limits.run_as, path)

    def upload_path(self, session_id: str) -> Path:
        session = self.get(session_id)
        return session.home / f"upload-{time.monotonic_ns()}.part"

    # ------------------------------------------------------------------ snapshots
    async def save_snapshot(self, session_id: str, snapshot_id: str) -> Path:
        """Write the session's snapshot zip into the cache; returns its path."""
        async with self._exclusive(session_id) as session:
            started = time.monotonic()
            image = session.home / IMAGE_NAMES[session.runtime]
            await self._request(session, {"op": "session_save", "path": str(image)})
            saved = time.monotonic()
            tmp = session.home / f"snapshot-{snapshot_id}.zip"
            await asyncio.to_thread(_write_zip, tmp, session.runtime, image, session.workdir)
            image.unlink(missing_ok=True)
        path = await self._cache.adopt(snapshot_id, tmp)
        logger.info(
            "snapshot %s of session %s: workspace image %.2f s, zip %.2f s, %d bytes",
            snapshot_id,
            session_id,
            saved - started,
            time.monotonic() - saved,
            path.stat().st_size,
        )
        return path

    async def load_snapshot(self, session_id: str, snapshot_id: str) -> None:
        zip_path = self._cache.path(snapshot_id)
        if zip_path is None:
            raise NotFound(f"snapshot {snapshot_id} is not in this compute node's cache")
        async with self._exclusive(session_id) as session:
            image = session.home / ("load-" + IMAGE_NAMES[session.runtime])
            await asyncio.to_thread(_extract_zip, zip_path, session.runtime, image, session.workdir)
            await asyncio.to_thread(hand_over, session.shell.limits.run_as, session.workdir)
            try:
                if image.exists():
                    await self._request(session, {"op": "session_load", "path": str(image)})
            finally:
                image.unlink(missing_ok=True)


class SnapshotCache:
    """Snapshot zips by id on this node's disk, evicting the least recently used above a size."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def _file(self, snapshot_id: str) -> Path:
        if not snapshot_id or "/" in snapshot_id or "\\" in snapshot_id or snapshot_id in (".", ".."):
            raise InvalidInput(f"invalid snapshot id {snapshot_id!r}")
        return self.root / f"{snapshot_id}.zip"

    def path(self, snapshot_id: str) -> Path | None:
        path = self._file(snapshot_id)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def upload_path(self, snapshot_id: str) -> Path:
        self._file(snapshot_id)
        return self.root / f".{snapshot_id}.{time.monotonic_ns()}.part"

    async def adopt(self, snapshot_id: str, tmp: Path) -> Path:
        path = self._file(snapshot_id)
        await asyncio.to_thread(os.replace, tmp, path)
        await asyncio.to_thread(self._evict, path)
        return path

    def _evict(self, keep: Path) -> None:
        entries = sorted((p for p in self.root.glob("*.zip")), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for path in entries:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _write_zip(target: Path, runtime: str, image: Path, root: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("manifest.json", orjson.dumps({"format": 1, "runtime": runtime}))
        if image.exists():
            zf.write(image, IMAGE_NAMES[runtime])
        for name in sorted(workdir.listing(str(root))):
            zf.write(root / name, "files/" + name.replace(os.sep, "/"))


def _extract_zip(source: Path, runtime: str, image: Path, root: Path) -> None:
    """Overwrite working-directory files from the zip and write its workspace image to `image`."""
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise InvalidInput("the snapshot content is not a zip file") from None
    with zf:
        try:
            manifest = orjson.loads(zf.read("manifest.json"))
        except (KeyError, orjson.JSONDecodeError):
            raise InvalidInput("the snapshot has no valid manifest.json") from None
        if manifest.get("runtime") != runtime:
            raise InvalidInput(
                f"a {manifest.get('runtime')} snapshot cannot be loaded into a {runtime} session", field="snapshotId"
            )
        base = root.resolve()
        for info in zf.infolist():
            if info.is_dir():
                continue
            if info.filename == IMAGE_NAMES[runtime]:
                with zf.open(info) as src, open(image, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            elif info.filename.startswith("files/"):
                target = (base / info.filename.removeprefix("files/")).resolve()
                if not target.is_relative_to(base) or target == base:
                    raise InvalidInput(f"the snapshot holds a file outside the working directory: {info.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
