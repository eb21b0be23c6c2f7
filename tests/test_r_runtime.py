"""The R runtime: R services through the HTTP API, and a real R shell process driven directly.

Console output in order (print, cat, message, warning, error and its call stack), R condition
messages as errorMessage, initCode once per shell, syntax errors, quit(), output files and
changed files; SIGINT interrupts a running evaluation and leaves the shell usable.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from computenode.shells.process import R, ShellProcess
from tests.support import WebNode, unique, wait_until
from tests.test_foundation import assert_error
from tests.test_types import consume, publish


def r_service(code: str, outputs: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "runtimeType": "R",
        "outputParameterDefinitions": [{"name": k, "type": v} for k, v in (outputs or {}).items()],
        **extra,
    }


async def test_add_in_r(server: WebNode, http: aiohttp.ClientSession) -> None:
    definition = {
        **r_service("result <- x + y", {"result": "numeric"}),
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    }
    name = await publish(server, http, definition)
    status, result = await consume(server, http, name, {"x": 1, "y": 2.5})
    assert status == 200
    assert result == {
        "success": True,
        "errorMessage": "",
        "outputParameters": {"result": 3.5},
        "outputFiles": {},
        "consoleOutput": "",
        "changedFiles": [],
    }


async def test_console_output_in_order_and_error_with_traceback(server: WebNode, http: aiohttp.ClientSession) -> None:
    code = """
print("first")
cat("second\\n")
message("third")
cat("to stderr\\n", file = stderr())
warning("fourth")
x <- 42
x
f <- function(x) { if (x > 1) stop("fifth: ", x); x }
g <- function() f(2)
g()
cat("never\\n")
"""
    name = await publish(server, http, r_service(code, {"x": "numeric"}))
    status, result = await consume(server, http, name, {})
    assert status == 200
    assert result["success"] is False
    assert result["errorMessage"] == "fifth: 2"
    assert result["outputParameters"] == {}
    assert result["consoleOutput"] == (
        '[1] "first"\nsecond\nthird\nto stderr\nWarning message:\nfourth\n[1] 42\n'
        "Error in f(2) : fifth: 2\n"
        "Traceback (most recent call first):\n"
        '3: stop("fifth: ", x)\n2: f(2)\n1: g()\n'
    )


async def test_warnings_and_messages_do_not_fail(server: WebNode, http: aiohttp.ClientSession) -> None:
    code = 'r <- as.integer("seven")\nh <- function() warning("careful")\nh()\nmessage("done ", r)'
    name = await publish(server, http, r_service(code, {"r": "integer"}))
    status, result = await consume(server, http, name, {})
    assert status == 200 and result["success"], result
    assert result["outputParameters"] == {"r": None}
    assert result["consoleOutput"] == (
        "Warning message:\nNAs introduced by coercion\nWarning message:\nIn h() : careful\ndone NA\n"
    )


async def test_top_level_error_and_r_errors_from_c(server: WebNode, http: aiohttp.ClientSession) -> None:
    for code, message, console in [
        ('stop("plain")', "plain", "Error: plain\n"),
        ('1 + "a"', "non-numeric argument to binary operator", 'Error in 1 + "a" : non-numeric'),
        ("undefined_thing", "object 'undefined_thing' not found", "Error: object 'undefined_thing' not found"),
        # At R's expression depth limit no handler can run: R reports the error itself.
        (
            "f <- function(n) f(n + 1); f(1)",
            "evaluation nested too deeply: infinite recursion / options(expressions=)?",
            "Error: evaluation nested too deeply",
        ),
        # A user's error option is not called: the shell reports the error as for any other.
        ("options(error = function() cat('USER HANDLER')); stop('x')", "x", "Error: x\n"),
        # Errors the code catches itself are not failures; one it rethrows is.
        (
            "try(stop('inner'), silent = TRUE); tryCatch(stop('inner2'), error = function(e) stop('outer'))",
            "outer",
            "Error in value[[3L]](cond) : outer",
        ),
    ]:
        name = await publish(server, http, r_service(code))
        status, result = await consume(server, http, name, {})
        assert status == 200 and result["success"] is False
        assert result["errorMessage"] == message
        assert result["consoleOutput"].startswith(console), result["consoleOutput"]
        assert "USER HANDLER" not in result["consoleOutput"]
    # The shell still serves afterwards.
    name = await publish(server, http, r_service("result <- 41 + 1"))
    status, result = await consume(server, http, name, {})
    assert status == 200 and result["success"] is True, result


async def test_syntax_errors_fail_with_a_message(server: WebNode, http: aiohttp.ClientSession) -> None:
    for definition, prefix in [
        (r_service("result <- (1 + "), "code: syntax error: "),
        (r_service("result <- 1", initCode="f <- function( {"), "initCode: syntax error: "),
    ]:
        name = await publish(server, http, definition)
        status, result = await consume(server, http, name, {})
        assert status == 200 and result["success"] is False
        assert result["errorMessage"].startswith(prefix), result["errorMessage"]
        assert "unexpected" in result["errorMessage"]


async def test_init_code_runs_once_per_shell(server: WebNode, http: aiohttp.ClientSession) -> None:
    init = """
runs <- as.integer(Sys.getenv("O16N_TEST_INIT_RUNS", "0")) + 1L
Sys.setenv(O16N_TEST_INIT_RUNS = runs)
model <- list(scale = 10)
"""
    code = 'runs_seen <- as.integer(Sys.getenv("O16N_TEST_INIT_RUNS")); pid <- Sys.getpid(); y <- x * model$scale'
    definition = {
        **r_service(code, {"runs_seen": "integer", "pid": "integer", "y": "numeric"}, initCode=init),
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
    }
    name = await publish(server, http, definition)
    pids = set()
    for x in range(6):
        status, result = await consume(server, http, name, {"x": x})
        assert status == 200 and result["success"], result
        outputs = result["outputParameters"]
        assert outputs["y"] == x * 10
        assert outputs["runs_seen"] == 1  # once per shell, however many requests it served
        pids.add(outputs["pid"])
    assert len(pids) < 6  # warm shells were reused


async def test_init_code_error_fails_the_request(server: WebNode, http: aiohttp.ClientSession) -> None:
    definition = r_service("y <- 1", {"y": "numeric"}, initCode='cat("loading\\n"); stop("no model file")')
    name = await publish(server, http, definition)
    status, result = await consume(server, http, name, {})
    assert status == 200 and result["success"] is False
    assert result["errorMessage"] == "initCode: no model file"
    assert result["consoleOutput"].startswith("loading\nError: no model file")


async def test_workspace_does_not_leak_between_requests(server: WebNode, http: aiohttp.ClientSession) -> None:
    code = """
seen <- c(exists("leftover", inherits = FALSE), exists("leaked"), basename(getwd()) == "elsewhere")
leftover <- TRUE
leaked <<- TRUE
dir.create("elsewhere")
setwd("elsewhere")
"""
    name = await publish(server, http, r_service(code, {"seen": "vector"}))
    for _ in range(3):
        status, result = await consume(server, http, name, {})
        assert status == 200
        assert result["success"] and result["outputParameters"] == {"seen": [False, False, False]}


async def test_output_files_and_changed_files(server: WebNode, http: aiohttp.ClientSession) -> None:
    code = 'write.csv(data.frame(a = 1:2), "answer.csv", row.names = FALSE)\nwriteLines("x", "notes.txt")'
    name = await publish(server, http, r_service(code, outputFileNames=["answer.csv", "image.png"]))
    status, result = await consume(server, http, name, {})
    assert status == 200 and result["success"], result
    assert result["changedFiles"] == ["answer.csv", "notes.txt"]
    assert result["outputFiles"]["image.png"] is None
    assert base64.b64decode(result["outputFiles"]["answer.csv"]) == b'"a"\n1\n2\n'


async def test_quit_in_r_gives_an_error_and_the_pool_recovers(server: WebNode, http: aiohttp.ClientSession) -> None:
    quitter = await publish(server, http, r_service("quit(save = 'no')"))
    adder = await publish(server, http, r_service("y <- 1 + 1", {"y": "numeric"}))
    headers = {**(await server.headers(http)), "Content-Type": "application/json"}
    async with http.post(f"{server.url}/api/{quitter}/1.0", data=b"{}", headers=headers) as resp:
        assert resp.status == 500
        error = await resp.json()
    assert_error(error, 500)
    assert error["error"] == "shell_crashed" and "exited" in error["message"]
    for _ in range(3):
        status, result = await consume(server, http, adder, {})
        assert status == 200 and result["outputParameters"] == {"y": 2}


# ---------------------------------------------------------------- a real R shell, driven directly


async def _load(shell: ShellProcess, code: str, outputs: list[list[str]] | None = None) -> None:
    service = {
        "key": unique("k"),
        "code": code,
        "init_code": "",
        "inputs": [],
        "outputs": outputs or [],
        "output_files": [],
    }
    reply, _ = await shell.request({"op": "load", "service": service}, timeout=30)
    assert reply["ok"], reply
    shell.loaded_key = service["key"]


async def _execute(shell: ShellProcess, timeout: float = 30) -> tuple[dict[str, Any], Any]:
    reply, blobs = await shell.request({"op": "execute", "key": shell.loaded_key}, b"{}", timeout=timeout)
    return reply, orjson.loads(blobs[0])


async def test_sigint_interrupts_r_and_the_shell_stays_usable(tmp_path: Path) -> None:
    shell = ShellProcess(R, tmp_path)
    await shell.start(60)
    try:
        shell.interrupt()  # between executions: ignored
        reply, _ = await shell.request({"op": "ping"}, timeout=10)
        assert reply["ok"]
        for busy in ("Sys.sleep(60)", "i <- 0; repeat { i <- i + 1 }"):
            await _load(shell, f'writeLines("go", "started"); {busy}')
            task = asyncio.ensure_future(_execute(shell))

            async def started() -> bool:
                return (shell.root / "started").exists()

            await wait_until(started, timeout=30, what="the R execution to start")
            loop = asyncio.get_running_loop()
            began = loop.time()
            shell.interrupt()
            reply, outputs = await asyncio.wait_for(task, 5)
            assert loop.time() - began < 1.0
            assert reply["success"] is False and reply["error"] == "execution interrupted"
            await _load(shell, "answer <- 6 * 7", [["answer", "integer"]])
            reply, outputs = await _execute(shell)
            assert reply["success"] and outputs == {"answer": 42}
    finally:
        await shell.terminate()
        shell.cleanup()


_REFCOUNT_PROBE = """
import sys
import rpy2.rinterface as ri
ri.initr()
from computenode.shells.r_values import RValues
rv = RValues()
values = [ri.FloatSexpVector([1.5, 2.5]), ri.IntSexpVector([1, 2]), ri.BoolSexpVector([True, False]),
          ri.evalr("matrix(1:6, nrow = 2)")]
before = sys.getrefcount(None)
for _ in range(5000):
    for value in values:
        rv.from_r("vector", value)
print(before - sys.getrefcount(None))
"""


async def test_r_to_json_conversions_keep_none_alive() -> None:
    """20,000 vector conversions must not take references from None (rpy2's memoryview() did,
    one per call, until the R shell died with 'deallocating None' under load)."""
    import sys

    from tests.support import ROOT

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _REFCOUNT_PROBE, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    lost = int(out.decode().split()[-1])
    assert abs(lost) < 100, f"None lost {lost} references over 20,000 conversions"


# R values a scalar output may be left with; each read both ways: the C-level fast path
# (r_values.scalar_from_r, None when it declines) and from_r.
_SCALAR_PROBE = r"""
import importlib, json
ri = importlib.import_module("rpy2.rinterface")
ri.initr()
from computenode.shells import r_values
rv = r_values.RValues()
cases = [
    ("numeric", "3.5"), ("numeric", "NA_real_"), ("numeric", "NaN"), ("numeric", "-Inf"), ("numeric", "2L"),
    ("numeric", "TRUE"), ("numeric", "c(a = 1)"), ("numeric", "as.Date('2020-01-02')"), ("numeric", "NULL"),
    ("integer", "7L"), ("integer", "NA_integer_"), ("integer", "7"), ("integer", "factor('a')"),
    ("logical", "FALSE"), ("logical", "NA"), ("logical", "1L"), ("character", "'x'"), ("character", "3"),
]
out = []
for type_name, expr in cases:
    value = ri.evalr(expr)
    plain, fast = rv.scalar_from_r(type_name, value.__sexp__._cdata)
    try:
        slow = rv.from_r(type_name, value)
    except Exception as exc:
        slow = f"error: {exc}"
    out.append([type_name, expr, plain, fast, slow])
print(json.dumps(out))
"""


async def test_scalar_outputs_read_from_r_memory_match_the_general_conversion() -> None:
    import json
    import sys

    from tests.support import ROOT

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SCALAR_PROBE, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    cases = json.loads(out.decode().splitlines()[-1])
    taken = [expr for _, expr, plain, _, _ in cases if plain]
    # The fast path takes the plain scalars of the output's own R type (and NULL), nothing else.
    assert taken == ["3.5", "NA_real_", "NaN", "-Inf", "NULL", "7L", "NA_integer_", "FALSE", "NA"], cases
    for type_name, expr, plain, fast, slow in cases:
        if plain:
            assert fast == slow, (type_name, expr, fast, slow)
