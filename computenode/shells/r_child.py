"""Entry point of an R shell: a child process of the compute node that runs user R code through rpy2.

Run as `python -m computenode.shells.r_child <socket fd> <working dir>`. It answers the same
framed requests as computenode/shells/python_child.py, with the same reply headers and blobs:

- `load`: parse the service's code once, restore its snapshot, if any (workspace.RData into a
  base environment `new.env(parent = globalenv())`, then files into the working directory),
  and run its initCode once into that environment;
- `execute`: evaluate the code in `new.env(parent = <base env>)` with the inputs bound, and
  return outputs (converted by declared type, computenode/shells/r_values.py), console
  output, changed files and output files;
- `unload`, `ping`.
- `session_*`: a remote session (computenode/sessions.py) in the global environment: code
  run with its console also appended to a file while it runs, workspace objects as RData
  (save/load), and the whole workspace saved to / merged from an RData file for snapshots.

Console output is everything R writes (print/cat, message(), warnings, errors and their
call stack), in order, captured by rpy2's console callbacks. SIGINT interrupts a running
evaluation (R's own interrupt condition) and is ignored otherwise. `quit()` ends the
process; the compute node sees the shell exit and replaces it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from common import values
from computenode.shells import protocol, workdir
from computenode.shells.children import keep_private, keep_socket_to_self, live_children

Reply = tuple[dict[str, Any], list[bytes]]

# Evaluation helpers, in an environment of their own (parent: base) that user code never sees.
# run() returns when the code succeeds; otherwise take_failure() gives c(status, message),
# status "error" or "interrupt".
_R_RUNNER = r"""
local({
    .o16n_user <- function(exprs, env) {
        for (e in exprs) {
            r <- withVisible(eval(e, env))
            if (r$visible) print(r$value)
        }
        invisible(NULL)
    }
    internal <- function(call) {
        is.null(call) || (is.call(call) && (identical(call[[1L]], quote(eval)) ||
                                            identical(call[[1L]], quote(withVisible))))
    }
    where <- function(call) {
        if (internal(call)) "" else paste0(" in ", paste(deparse(call, nlines = 1L), collapse = ""))
    }
    user_frames <- function(calls) {
        start <- 0L
        for (i in seq_along(calls)) {
            if (is.call(calls[[i]]) && identical(calls[[i]][[1L]], quote(.o16n_user))) start <- i
        }
        frames <- calls[-seq_len(start)]
        skip <- 0L
        while (skip < 3L && skip < length(frames) && internal(frames[[skip + 1L]])) skip <- skip + 1L
        frames <- frames[-seq_len(skip)]
        # drop this handler's own frame and R's error dispatch
        frames <- frames[-length(frames)]
        keep <- vapply(frames, function(f) !(is.call(f) &&
            identical(f[[1L]], quote(.handleSimpleError))), logical(1L))
        frames[keep]
    }
    traceback_text <- function(frames) {
        if (!length(frames)) return("")
        lines <- vapply(frames, function(f) paste(deparse(f, nlines = 1L), collapse = ""), "")
        n <- length(lines)
        paste0("Traceback (most recent call first):\n",
               paste0(n:1, ": ", rev(lines), "\n", collapse = ""))
    }
    # run() returns (NULL), or does not: a failure is recorded for take_failure() and
    # R unwinds to the top level (the "abort" restart), where R_tryEval returns with its error
    # flag set. No tryCatch: its R-level frames cost about 11 µs per run, more than x + y.
    failure <- NULL
    run <- function(exprs, env) {
        withCallingHandlers(
            .o16n_user(exprs, env),
            warning = function(w) {
                cat("Warning message:\n", if (internal(conditionCall(w))) "" else
                    paste0("In ", paste(deparse(conditionCall(w), nlines = 1L), collapse = ""), " : "),
                    conditionMessage(w), "\n", sep = "", file = stderr())
                invokeRestart("muffleWarning")
            },
            error = function(e) {
                trace <- traceback_text(user_frames(sys.calls()))
                call <- conditionCall(e)
                cat("Error", where(call), if (internal(call)) ": " else " : ", conditionMessage(e), "\n",
                    sep = "", file = stderr())
                cat(trace, file = stderr())
                failure <<- c("error", conditionMessage(e))
                invokeRestart("abort")
            },
            interrupt = function(i) {
                failure <<- c("interrupt", "execution interrupted")
                invokeRestart("abort")
            }
        )
    }
    # What made the last run not return (NULL when the unwinding did not come from run()).
    take_failure <- function() {
        f <- failure
        failure <<- NULL
        f
    }
    clear_global <- function() {  # names() of an environment is a fast ls(all.names = TRUE)
        leftover <- names(globalenv())
        if (length(leftover)) rm(list = leftover, envir = globalenv())
    }
    # One service execution in one call from Python: bind inputs, run, clear the global
    # environment, return the outputs (bound by the code, else by initCode, else NULL) as a list.
    execute <- function(exprs, base, inputs, outputs) {
        env <- new.env(parent = base)
        if (length(inputs)) list2env(inputs, envir = env)
        run(exprs, env)  # returns only when the code succeeded
        clear_global()
        lapply(outputs, function(n) {
            if (exists(n, envir = env, inherits = FALSE)) get(n, envir = env, inherits = FALSE)
            else if (exists(n, envir = base, inherits = FALSE)) get(n, envir = base, inherits = FALSE)
        })
    }
    parse_code <- function(code) {
        tryCatch(parse(text = code, keep.source = FALSE), error = function(e) conditionMessage(e))
    }
    environment()
}, envir = new.env(parent = baseenv()))
"""


# Session helpers: workspace objects of the global environment as RData files.
_R_SESSION = r"""
local({
    objects <- function() ls(envir = globalenv())
    has <- function(name) exists(name, envir = globalenv(), inherits = FALSE)
    save_objects <- function(names, file) save(list = names, envir = globalenv(), file = file)
    remove <- function(name) rm(list = name, envir = globalenv())
    load_all <- function(file, env = globalenv()) invisible(load(file, envir = env))
    put_object <- function(name, file) {
        e <- new.env()
        loaded <- tryCatch(load(file, envir = e), error = function(err) NULL)
        value <- if (is.null(loaded)) {
            readRDS(file)
        } else if (name %in% loaded) {
            get(name, envir = e)
        } else if (length(loaded) == 1L) {
            get(loaded, envir = e)
        } else {
            stop("the RData file holds several objects and none is named ", name)
        }
        assign(name, value, envir = globalenv())
        invisible(TRUE)
    }
    environment()
}, envir = new.env(parent = baseenv()))
"""


@dataclass
class LoadedService:
    key: str
    code: Any  # the parsed expression vector
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    output_files: list[str]
    base: Any = None  # the environment initCode ran in
    output_names: Any = None  # the outputs' names as an R character vector, built once
    files: workdir.Listing = field(default_factory=dict)

    # The SEXPs of `code`, `base` and `output_names` (rpy2 keeps them alive while those live).
    @property
    def code_c(self) -> Any:
        return self.code.__sexp__._cdata

    @property
    def base_c(self) -> Any:
        return self.base.__sexp__._cdata

    @property
    def output_names_c(self) -> Any:
        return self.output_names.__sexp__._cdata


class RShell:
    def __init__(self, sock: socket.socket, root: str) -> None:
        from computenode.shells import r_values

        # rpy2's type stubs do not re-export its low-level API: use it untyped.
        ri: Any = importlib.import_module("rpy2.rinterface")
        callbacks: Any = importlib.import_module("rpy2.rinterface_lib.callbacks")
        self.ri = ri
        self.rlib: Any = importlib.import_module("rpy2.rinterface_lib.openrlib").rlib
        self.sock = sock
        self.frames = protocol.FrameReader(sock)
        self.root = root
        self.service: LoadedService | None = None
        self.executing = False
        self.console_path = ""
        self.console: list[str] = []
        self._console_file: Any = None
        callbacks.consolewrite_print = self._write
        callbacks.consolewrite_warnerror = self._write
        callbacks.showmessage = self._write
        callbacks.consoleread = lambda prompt: ""
        runner = ri.evalr(_R_RUNNER)
        self._run_r = runner["run"]
        self._take_failure = runner["take_failure"]
        self._parse = runner["parse_code"]
        self._clear_global = runner["clear_global"]
        self._execute_r = runner["execute"]  # kept: rpy2 keeps its SEXP alive
        self._execute_c = self._execute_r.__sexp__._cdata
        self.ffi: Any = importlib.import_module("rpy2.rinterface_lib.openrlib").ffi
        self._error_flag = self.ffi.new("int *")
        self._names_symbol = self.rlib.Rf_install(b"names")
        self._geterrmessage = ri.baseenv["geterrmessage"]
        self._wrap = importlib.import_module("rpy2.rinterface_lib.conversion")._cdata_to_rinterface
        self._new_env = ri.baseenv["new.env"]
        self._session_r = ri.evalr(_R_SESSION)
        self.session_open = False
        self.r_values = r_values.RValues()
        signal.signal(signal.SIGINT, self._on_sigint)

    def _write(self, text: str) -> None:
        self.console.append(text)
        if self._console_file is not None:
            self._console_file.write(text)
            self._console_file.flush()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Runs when R next calls back into Python (R_ProcessEvents); R then raises its interrupt.
        if self.executing:
            self.rlib.R_interrupts_pending = 1

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
            try:
                reply, out = handler(header, blobs)
            except Exception as exc:  # a bug here must not take the shell down mid-request
                reply, out = {"ok": False, "error": f"R shell failed: {type(exc).__name__}: {exc}"}, []
            protocol.send_frame(self.sock, reply, *out)

    # ------------------------------------------------------------------ ops
    def op_ping(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        return {"ok": True, "pid": os.getpid(), "rss": _rss_bytes()}, []

    def op_unload(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        self.service = None
        self._clear_global()
        workdir.restore(self.root, {})
        return {"ok": True}, []

    def op_load(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        spec = header["service"]
        self.service = None
        self._clear_global()
        workdir.restore(self.root, {})
        parsed = self._parse(self.ri.StrSexpVector([spec["code"]]))
        if parsed.typeof == self.ri.RTYPES.STRSXP:
            return {"ok": False, "error": f"code: syntax error: {parsed[0]}", "console": ""}, []
        service = LoadedService(
            key=spec["key"],
            code=parsed,
            inputs=[(p[0], p[1]) for p in spec["inputs"]],
            outputs=[(p[0], p[1]) for p in spec["outputs"]],
            output_files=list(spec["output_files"]),
            base=self._new_env(parent=self.ri.globalenv),
            output_names=self.ri.StrSexpVector([p[0] for p in spec["outputs"]]),
        )
        self.console.clear()
        snapshot = header.get("snapshot")
        if snapshot:  # the service's own snapshot (computenode/service_snapshots.py): objects, then files
            try:
                if snapshot["image"]:
                    self._session_r["load_all"](self.ri.StrSexpVector([snapshot["image"]]), service.base)
                workdir.adopt(snapshot["files"], self.root)
            except (self.ri.embedded.RRuntimeError, OSError) as exc:
                return {"ok": False, "error": f"snapshot: it cannot be restored: {exc}", "console": ""}, []
        if spec.get("init_code"):
            init = self._parse(self.ri.StrSexpVector([spec["init_code"]]))
            if init.typeof == self.ri.RTYPES.STRSXP:
                return {"ok": False, "error": f"initCode: syntax error: {init[0]}", "console": ""}, []
            ok, error = self._run(init, service.base)
            if not ok:
                return {"ok": False, "error": f"initCode: {error}", "console": self._take_console()}, []
        service.files = workdir.listing(self.root)
        self.service = service
        return {"ok": True, "console": self._take_console()}, []

    def op_execute(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        service = self.service
        if service is None or service.key != header.get("key"):
            return {"ok": False, "error": "service not loaded", "not_loaded": True}, []
        try:
            raw = values.loads(blobs[0]) if blobs and blobs[0] else {}
        except ValueError as exc:  # orjson.JSONDecodeError
            return self._failure(f"inputs are not valid JSON: {exc}"), [b"{}"]
        if not isinstance(raw, dict):
            return self._failure("inputs must be a JSON object"), [b"{}"]
        # The whole execution goes through R's C API (computenode/shells/r_values.py): the inputs
        # list, the call of the runner's `execute` and the scalar outputs. Every SEXP made here
        # is protected until the outputs are read.
        rlib, protected = self.rlib, 0
        try:
            present = [(name, type_name) for name, type_name in service.inputs if name in raw]
            inputs = rlib.Rf_protect(rlib.Rf_allocVector(rlib.VECSXP, len(present)))
            names = rlib.Rf_protect(rlib.Rf_allocVector(rlib.STRSXP, len(present)))
            protected = 2
            for i, (name, type_name) in enumerate(present):
                try:
                    rlib.SET_VECTOR_ELT(inputs, i, self.r_values.scalar_to_r(type_name, raw[name]))
                except (values.ValueError_, ValueError, TypeError, OverflowError) as exc:
                    return self._failure(f"input '{name}' ({type_name}): {exc}"), [b"{}"]
                rlib.SET_STRING_ELT(names, i, rlib.Rf_mkCharCE(name.encode("utf-8"), rlib.CE_UTF8))
            rlib.Rf_setAttrib(inputs, self._names_symbol, names)
            self.console.clear()
            ok, error, found = self._execute(service, inputs)
            if found is not None:
                rlib.Rf_protect(found)
                protected += 1
            changed = workdir.changed(service.files, workdir.listing(self.root))
            outputs: dict[str, Any] = {}
            if ok:
                for i, (name, type_name) in enumerate(service.outputs):
                    try:
                        outputs[name] = self._output(type_name, rlib.VECTOR_ELT(found, i))
                    except Exception as exc:  # any value R code can leave must fail cleanly, naming the output
                        ok, error = False, f"output '{name}' ({type_name}): {exc}"
                        break
        finally:
            rlib.Rf_unprotect(protected)
        return workdir.service_reply(
            self.root,
            service.files,
            ok=ok,
            error=error,
            console=self._take_console(),
            changed=changed,
            outputs=outputs,
            output_files=service.output_files,
            strays=live_children(),
        )

    def _output(self, type_name: str, cdata: Any) -> Any:
        plain, value = self.r_values.scalar_from_r(type_name, cdata)
        if plain:
            return value
        return self.r_values.from_r(type_name, self._wrap(cdata))

    # ------------------------------------------------------------------ session ops
    def op_session_open(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        # A pooled shell may have served services: start the session empty.
        self.service = None
        self._clear_global()
        workdir.restore(self.root, {})
        self.session_open = True
        self.console_path = str(header["console_path"])
        return {"ok": True}, []

    def op_session_execute(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        if not self.session_open:
            return {"ok": False, "error": "no session is open in this shell"}, []
        try:
            inputs = values.loads(blobs[0]) if blobs and blobs[0] else []
        except ValueError as exc:
            return self._failure(f"inputParameters are not valid JSON: {exc}"), [b"[]"]
        env = self.ri.globalenv
        for item in inputs:
            try:
                env[str(item["name"])] = self._to_r(item.get("value"))
            except (values.ValueError_, ValueError, TypeError, OverflowError) as exc:
                return self._failure(f"input '{item['name']}': {exc}"), [b"[]"]
        self.console.clear()
        before = workdir.listing(self.root)
        parsed = self._parse(self.ri.StrSexpVector([str(header["code"])]))
        if parsed.typeof == self.ri.RTYPES.STRSXP:
            ok, error = False, f"syntax error: {parsed[0]}"
        else:
            self._console_file = open(self.console_path, "w", encoding="utf-8")  # noqa: SIM115
            try:
                ok, error = self._run(parsed, env)
            finally:
                self._console_file.close()
                self._console_file = None
        outputs = []
        for name in header.get("outputs", []):
            try:
                value = self._from_r(env[name]) if self._has(name) else None
            except Exception as exc:  # any value R code can leave must fail cleanly, naming the output
                ok, error, value = False, f"output '{name}': {exc}", None
            outputs.append({"name": name, "value": value})
        reply = {
            "ok": True,
            "success": ok,
            "error": error,
            "console": self._take_console(),
            "changed": workdir.changed(before, workdir.listing(self.root)),
        }
        try:
            out = values.dumps(outputs)
        except TypeError as exc:
            reply.update(success=False, error=f"outputs cannot be encoded as JSON: {exc}")
            out = b"[]"
        return reply, [out]

    def op_session_objects(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        return {"ok": True, "names": [str(n) for n in self._session_r["objects"]()]}, []

    def op_session_object_get(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        name = str(header["name"])
        if not self._has(name):
            return {"ok": False, "not_found": True, "error": f"object '{name}' not found"}, []
        path = self._temp_path()
        try:
            self._session_r["save_objects"](self.ri.StrSexpVector([name]), self.ri.StrSexpVector([path]))
            with open(path, "rb") as f:
                return {"ok": True}, [f.read()]
        except self.ri.embedded.RRuntimeError as exc:
            return {"ok": False, "invalid": True, "error": f"object '{name}' cannot be saved: {exc}"}, []
        finally:
            _unlink(path)

    def op_session_object_put(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        path = self._temp_path()
        try:
            with open(path, "wb") as f:
                f.write(blobs[0] if blobs else b"")
            self._session_r["put_object"](self.ri.StrSexpVector([str(header["name"])]), self.ri.StrSexpVector([path]))
        except self.ri.embedded.RRuntimeError as exc:
            message = str(exc).strip()
            return {"ok": False, "invalid": True, "error": f"the body is not an RData or RDS file: {message}"}, []
        finally:
            _unlink(path)
        return {"ok": True}, []

    def op_session_object_delete(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        name = str(header["name"])
        if not self._has(name):
            return {"ok": False, "not_found": True, "error": f"object '{name}' not found"}, []
        self._session_r["remove"](self.ri.StrSexpVector([name]))
        return {"ok": True}, []

    def op_session_save(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        names = self._session_r["objects"]()
        try:
            self._session_r["save_objects"](names, self.ri.StrSexpVector([str(header["path"])]))
        except self.ri.embedded.RRuntimeError as exc:
            return {"ok": False, "invalid": True, "error": f"the workspace cannot be saved: {exc}"}, []
        return {"ok": True, "skipped": []}, []

    def op_session_load(self, header: dict[str, Any], blobs: list[bytes]) -> Reply:
        try:
            self._session_r["load_all"](self.ri.StrSexpVector([str(header["path"])]))
        except self.ri.embedded.RRuntimeError as exc:
            return {"ok": False, "invalid": True, "error": f"the snapshot workspace cannot be loaded: {exc}"}, []
        return {"ok": True}, []

    def _has(self, name: str) -> bool:
        return bool(self._session_r["has"](self.ri.StrSexpVector([name]))[0])

    def _temp_path(self) -> str:
        import tempfile

        handle, path = tempfile.mkstemp(suffix=".RData")
        os.close(handle)
        return path

    def _to_r(self, value: Any) -> Any:
        """A session input: its R type inferred from the JSON value."""
        if value is None:
            return self.ri.NULL
        if isinstance(value, bool):
            return self.r_values.to_r("logical", value)
        if isinstance(value, int | float):
            return self.r_values.to_r("numeric", value)
        if isinstance(value, str):
            return self.r_values.to_r("character", value)
        if isinstance(value, dict):
            return self.r_values.to_r("data.frame", value)
        if value and all(isinstance(row, list) for row in value):
            return self.r_values.to_r("matrix", value)
        return self.r_values.to_r("vector", value)

    def _from_r(self, sexp: Any) -> Any:
        """A session output as JSON, its shape inferred from the R value."""
        rv = self.r_values
        if sexp is self.ri.NULL or sexp.typeof == self.ri.RTYPES.NILSXP:
            return None
        if rv._is_data_frame(sexp):
            return rv.from_r("data.frame", sexp)
        dim = rv._dim(sexp)
        if dim is not None and len(dim) == 2:
            return rv.from_r("matrix", sexp)
        scalar = {
            self.ri.RTYPES.LGLSXP: "logical",
            self.ri.RTYPES.INTSXP: "integer",
            self.ri.RTYPES.REALSXP: "numeric",
            self.ri.RTYPES.STRSXP: "character",
        }.get(sexp.typeof)
        if scalar is not None and len(sexp) == 1 and rv._names(sexp) is None:
            return rv.from_r(scalar, sexp)
        return rv.from_r("vector", sexp)

    # ------------------------------------------------------------------ helpers
    def _failure(self, message: str) -> dict[str, Any]:
        return {"ok": True, "success": False, "error": message, "console": "", "changed": [], "files": []}

    def _take_console(self) -> str:
        text = "".join(self.console)
        self.console.clear()
        return text

    def _execute(self, service: LoadedService, inputs: Any) -> tuple[bool, str, Any]:
        """Run a service's code with its inputs (a named R list, cdata) through the runner's
        `execute`: (ok, error, the output values as an R list in declared order, unprotected)."""
        rlib = self.rlib
        with self._evaluating():
            call = rlib.Rf_protect(
                rlib.Rf_lang5(self._execute_c, service.code_c, service.base_c, inputs, service.output_names_c)
            )
            try:
                result = rlib.R_tryEval(call, rlib.R_GlobalEnv, self._error_flag)
            finally:
                rlib.Rf_unprotect(1)
        if self._error_flag[0]:  # the code failed (run() unwound), or an interrupt came outside it
            self._clear_global()
            return False, self._why_failed(), None
        return True, "", result

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """User code runs (SIGINT interrupts it); afterwards no interrupt is left pending and the
        working directory is the shell's again (setwd() in user code)."""
        self.executing = True
        try:
            yield
        finally:
            self.executing = False
            self.rlib.R_interrupts_pending = 0
            if os.getcwd() != self.root:
                os.chdir(self.root)

    def _run(self, exprs: Any, env: Any) -> tuple[bool, str]:
        try:
            with self._evaluating():
                self._run_r(exprs, env)
        except self.ri.embedded.RRuntimeError:  # the code failed, or an interrupt came outside run()
            return False, self._why_failed()
        return True, ""

    def _why_failed(self) -> str:
        """Why the last evaluation did not return: what run() recorded, else R's error message."""
        failure = self._take_failure()
        if failure.typeof == self.ri.RTYPES.STRSXP:
            return str(failure[1])
        # No handler could run (e.g. at R's expression depth limit): R printed the error itself.
        message = str(self._geterrmessage()[0]).strip()
        return message.removeprefix("Error: ") or "R evaluation failed"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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
    ri: Any = importlib.import_module("rpy2.rinterface")
    ri.initr()
    RShell(sock, root).serve()
    ri.endr(0)  # R's exit finalizers; removes its session temp directory
    os._exit(0)  # skip interpreter finalization: collecting rpy2 objects after R ended can crash it


if __name__ == "__main__":
    main()
