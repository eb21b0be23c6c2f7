"""Entry point of a Python shell: a child process of the compute node that runs user code.

Run as `python -m computenode.shells.python_child <socket fd> <working dir>`. It answers
framed requests (computenode/shells/protocol.py) one at a time:

- `load`: prepare a service version: run its initCode once into a base namespace and
  compile its code once;
- `execute`: run the loaded service's code in a fresh copy of the base namespace with the
  inputs bound, and return outputs, console output, changed files and output files;
- `unload`: drop the service and restore the working directory; `ping`.

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
        self.root = root
        self.service: LoadedService | None = None
        self.executing = False
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.executing:
            raise KeyboardInterrupt

    def serve(self) -> None:
        while True:
            try:
                header, blobs = protocol.recv_frame(self.sock)
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
        files = workdir.read_outputs(self.root, service.output_files) if service.output_files else []
        if changed:
            workdir.restore(self.root, service.files)
        reply = {
            "ok": True,
            "success": ok,
            "error": error,
            "console": console.getvalue(),
            "changed": changed,
            "files": [[name, content is not None] for name, content in files],
            "strays": _live_children(),
        }
        try:
            out = values.dumps(outputs) if ok else b"{}"
        except TypeError as exc:
            reply.update(success=False, error=f"outputs cannot be encoded as JSON: {exc}")
            out = b"{}"
        return reply, [out, *(content or b"" for _, content in files)]

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


def _live_children() -> int:
    """Reap finished child processes; return how many are still running (the node then recycles us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid == 0:
            return 1


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def main() -> None:
    fd, root = int(sys.argv[1]), sys.argv[2]
    os.makedirs(root, exist_ok=True)
    os.chdir(root)
    sock = socket.socket(fileno=fd)
    import numpy  # noqa: F401  (warm the common imports before the first request)
    import pandas  # noqa: F401

    PythonShell(sock, root).serve()


if __name__ == "__main__":
    main()
