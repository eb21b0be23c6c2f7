"""Entry point of a Python shell: a child process of the compute node that runs user code.

Run as `python -m computenode.shells.python_child <socket fd> <working dir>`. It answers
framed requests (computenode/shells/protocol.py) one at a time:

- `load`: prepare a service version: restore its snapshot, if any (objects into a base
  namespace, then files into the working directory), run its initCode once into that
  namespace and compile its code once;
- `execute`: run the loaded service's code in a fresh copy of the base namespace with the
  inputs bound, and return outputs, console output, changed files and output files;
- `unload`: drop the service and restore the working directory; `ping`.
- `session_*`: a remote session (computenode/sessions.py): one persistent namespace, code
  executed into it with its console copied to a file while it runs, workspace objects
  as dill, and the whole workspace saved to / merged from a file for snapshots.

SIGINT interrupts a running execution (KeyboardInterrupt) and is ignored otherwise.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import sys
import traceback
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from common import values
from computenode.shells import protocol, workdir
from computenode.shells.children import keep_private, keep_socket_to_self, live_children


@dataclass
class LoadedService:
    key: str
    code: CodeType
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    output_files: list[str]
    base: dict[str, Any] = field(default_factory=dict)
    files: workdir.Listing = field(default_factory=dict)


class Interrupted(BaseException):
    pass


class PythonShell:
    def __init__(self, sock: socket.socket, root: str) -> None:
        self.sock = sock
        self.frames = protocol.FrameReader(sock)
        self.root = root
        self.service: LoadedService | None = None
        self.session: dict[str, Any] | None = None
        self.console_path = ""
        self.executing = False
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.executing:
            raise KeyboardInterrupt

    def serve(self) -> None:
        while True:
            try:
                header, blobs = self.frames.recv()
            except (protocol.ProtocolError, OSError):
                return
            op = header.get("op")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                protocol.send_frame(self.sock, {"ok": False, "error": f"unknown op {op!r}"})
                continue
            reply, out = handler(header, blobs)
            protocol.send_frame(self.sock, reply, *out)

    # ------------------------------------------------------------------ ops
    def op_ping(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        return {"ok": True, "pid": os.getpid(), "rss": _rss_bytes()}, []

    def op_unload(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        self.service = None
        workdir.restore(self.root, {})
        return {"ok": True}, []

    def op_load(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        spec = header["service"]
        self.service = None
        workdir.restore(self.root, {})
        try:
            code = compile(spec["code"], f"<service {spec['key']}>", "exec")
        except SyntaxError as exc:
            return {"ok": False, "error": f"code: SyntaxError: {exc}", "console": ""}, []
        service = LoadedService(
            key=spec["key"],
            code=code,
            inputs=[(p[0], p[1]) for p in spec["inputs"]],
            outputs=[(p[0], p[1]) for p in spec["outputs"]],
            output_files=list(spec["output_files"]),
        )
        service.base = {"__name__": "__main__", "__builtins__": __builtins__}
        snapshot = header.get("snapshot")
        if snapshot:  # the service's own snapshot (computenode/service_snapshots.py): objects, then files
            try:
                if snapshot["image"]:
                    service.base.update(_read_image(snapshot["image"]))
                workdir.adopt(snapshot["files"], self.root)
            except Exception as exc:
                return {"ok": False, "error": f"snapshot: it cannot be restored: {exc}", "console": ""}, []
        console = io.StringIO()
        if spec.get("init_code"):
            ok, error = self._run(spec["init_code"], service.base, console, f"<initCode {spec['key']}>")
            if not ok:
                return {"ok": False, "error": f"initCode: {error}", "console": console.getvalue()}, []
        service.files = workdir.listing(self.root)
        self.service = service
        return {"ok": True, "console": console.getvalue()}, []

    def op_execute(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        service = self.service
        if service is None or service.key != header.get("key"):
            return {"ok": False, "error": "service not loaded", "not_loaded": True}, []
        namespace = dict(service.base)
        try:
            raw = values.loads(blobs[0]) if blobs and blobs[0] else {}
        except ValueError as exc:  # orjson.JSONDecodeError
            return self._failure(f"inputs are not valid JSON: {exc}"), [b"{}"]
        for name, type_name in service.inputs:
            if name not in raw:
                continue
            try:
                namespace[name] = values.to_python(type_name, raw[name])
            except (values.ValueError_, ValueError, TypeError) as exc:
                return self._failure(f"input '{name}' ({type_name}): {exc}"), [b"{}"]
        console = io.StringIO()
        before = service.files  # restored after every request that changed files
        ok, error = self._run(service.code, namespace, console)
        with contextlib.suppress(OSError):
            if os.getcwd() != self.root:
                os.chdir(self.root)  # the next request starts in the working directory again
        after = workdir.listing(self.root)
        changed = workdir.changed(before, after)
        outputs: dict[str, Any] = {}
        if ok:
            for name, type_name in service.outputs:
                try:
                    outputs[name] = values.to_json(type_name, namespace.get(name))
                except (values.ValueError_, ValueError, TypeError) as exc:
                    ok, error = False, f"output '{name}' ({type_name}): {exc}"
                    break
        return workdir.service_reply(
            self.root,
            service.files,
            ok=ok,
            error=error,
            console=console.getvalue(),
            changed=changed,
            outputs=outputs,
            output_files=service.output_files,
            strays=live_children(),
        )

    # ------------------------------------------------------------------ session ops
    def op_session_open(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        # A pooled shell may have served services: start the session from an empty directory.
        self.service = None
        workdir.restore(self.root, {})
        self.session = {"__name__": "__main__", "__builtins__": __builtins__}
        self.console_path = str(header["console_path"])
        return {"ok": True}, []

    def op_session_execute(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        namespace = self.session
        if namespace is None:
            return {"ok": False, "error": "no session is open in this shell"}, []
        try:
            inputs = values.loads(blobs[0]) if blobs and blobs[0] else []
        except ValueError as exc:
            return self._failure(f"inputParameters are not valid JSON: {exc}"), [b"[]"]
        for item in inputs:
            namespace[str(item["name"])] = item.get("value")
        console = _TeeConsole(self.console_path)
        before = workdir.listing(self.root)
        try:
            ok, error = self._run(str(header["code"]), namespace, console, "<session>")
        finally:
            console.close_file()
        outputs = [{"name": name, "value": _to_json(namespace.get(name))} for name in header.get("outputs", [])]
        reply = {
            "ok": True,
            "success": ok,
            "error": error,
            "console": console.getvalue(),
            "changed": workdir.changed(before, workdir.listing(self.root)),
        }
        try:
            out = values.dumps(outputs)
        except TypeError as exc:
            reply.update(success=False, error=f"outputs cannot be encoded as JSON: {exc}")
            out = b"[]"
        return reply, [out]

    def op_session_objects(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        return {"ok": True, "names": _object_names(self.session or {})}, []

    def op_session_object_get(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        import dill

        namespace, name = self.session or {}, str(header["name"])
        if name not in _object_names(namespace):
            return {"ok": False, "not_found": True, "error": f"object '{name}' not found"}, []
        try:
            return {"ok": True}, [dill.dumps(namespace[name])]
        except Exception as exc:
            return {"ok": False, "invalid": True, "error": f"object '{name}' cannot be serialized: {exc}"}, []

    def op_session_object_put(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        import dill

        if self.session is None:
            return {"ok": False, "error": "no session is open in this shell"}, []
        try:
            self.session[str(header["name"])] = dill.loads(blobs[0] if blobs else b"")
        except Exception as exc:
            return {"ok": False, "invalid": True, "error": f"the body is not a dill-serialized object: {exc}"}, []
        return {"ok": True}, []

    def op_session_object_delete(
        self, header: dict[str, Any], blobs: list[bytes]
    ) -> tuple[dict[str, Any], list[bytes]]:
        namespace, name = self.session or {}, str(header["name"])
        if name not in _object_names(namespace):
            return {"ok": False, "not_found": True, "error": f"object '{name}' not found"}, []
        del namespace[name]
        return {"ok": True}, []

    def op_session_save(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        """Write every object that dill can serialize to `path` ({name: dill bytes}, pickled)."""
        import pickle

        import dill

        namespace = self.session or {}
        image: dict[str, bytes] = {}
        skipped = []
        for name in _object_names(namespace):
            try:
                image[name] = dill.dumps(namespace[name])
            except Exception:
                skipped.append(name)
        with open(str(header["path"]), "wb") as f:
            pickle.dump(image, f, protocol=4)
        return {"ok": True, "skipped": skipped}, []

    def op_session_load(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        """Merge the objects saved by `session_save` at `path` into the namespace."""
        if self.session is None:
            return {"ok": False, "error": "no session is open in this shell"}, []
        try:
            loaded = _read_image(str(header["path"]))
        except Exception as exc:
            return {"ok": False, "invalid": True, "error": f"the snapshot workspace cannot be loaded: {exc}"}, []
        self.session.update(loaded)
        return {"ok": True}, []

    # ------------------------------------------------------------------ helpers
    def _failure(self, message: str) -> dict[str, Any]:
        return {"ok": True, "success": False, "error": message, "console": "", "changed": [], "files": []}

    def _run(
        self, code: str | CodeType, namespace: dict[str, Any], console: io.StringIO, filename: str = "<code>"
    ) -> tuple[bool, str]:
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
            self.executing = True
            try:
                compiled = code if isinstance(code, CodeType) else compile(code, filename, "exec")
                exec(compiled, namespace)
                return True, ""
            except KeyboardInterrupt:
                return False, "execution interrupted"
            except SystemExit as exc:
                return False, f"SystemExit: {exc.code}"
            except BaseException as exc:
                traceback.print_exc(file=console)
                return False, f"{type(exc).__name__}: {exc}"
            finally:
                self.executing = False
                sys.stdout.flush()


class _TeeConsole(io.StringIO):
    """Captured console output that is also appended to a file, so it can be read while code runs."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._file = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, text: str) -> int:
        if self._file is not None:
            self._file.write(text)
            self._file.flush()
        return super().write(text)

    def close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_image(path: str) -> dict[str, Any]:
    """The objects of a workspace image written by `session_save` ({name: dill bytes}, pickled)."""
    import pickle

    import dill

    with open(path, "rb") as f:
        image = pickle.load(f)
    return {name: dill.loads(blob) for name, blob in image.items()}


def _object_names(namespace: dict[str, Any]) -> list[str]:
    return [name for name in namespace if not (name.startswith("__") and name.endswith("__"))]


def _to_json(value: Any) -> Any:
    """A session output as JSON, its shape inferred from the Python value."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if hasattr(value, "columns"):
        return values.to_json("data.frame", value)
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return values.to_json("matrix", value)
    if isinstance(value, list | tuple | set | np.ndarray) or type(value).__name__ == "Series":
        return [_to_json(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    return values._plain(value)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def main() -> None:
    fd, root = int(sys.argv[1]), os.getcwd()  # started in its working directory (its path is not in argv)
    keep_private()
    sock = socket.socket(fileno=fd)
    keep_socket_to_self(sock)
    import numpy  # noqa: F401  (warm the common imports before the first request)
    import pandas  # noqa: F401

    PythonShell(sock, root).serve()


if __name__ == "__main__":
    main()
