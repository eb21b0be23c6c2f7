"""The parameter types through the HTTP API, both directions, R and Python services.

Types: logical, numeric, integer, character, vector, matrix, data.frame (JSON shapes of
semantics §1): NA/None, empty vectors, Unicode, factors/dates coming back from R and
pandas/numpy dates from Python, a 100,000-row data.frame, ill-typed inputs (400 at the
web node) and outputs that do not fit their declared type (success false, naming it).
"""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import WebNode, unique
from tests.test_foundation import assert_error

TYPES = {
    "l": "logical",
    "n": "numeric",
    "i": "integer",
    "s": "character",
    "v": "vector",
    "m": "matrix",
    "d": "data.frame",
}
PARAMS = [{"name": name, "type": type_name} for name, type_name in TYPES.items()]

# Each service echoes every input back as the output of the same name, and says what it received.
ECHO = {
    "R": "cls <- vapply(list(l, n, i, s, v, m, d), function(x) class(x)[1L], '')",
    "Python": "cls = [type(x).__name__ for x in (l, n, i, s, v, m, d)]",
}

REGULAR = {
    "l": True,
    "n": 1.5,
    "i": 7,
    "s": "héllo ✓ 日本語",
    "v": [1.5, 2, 3],
    "m": [[1, 2, 3], [4, 5, 6]],
    "d": {"a": [1.5, 2.5], "b": ["x", "ÿ"], "c": [True, False], "e": [1, 2]},
}
MISSING = {
    "l": None,
    "n": None,
    "i": None,
    "s": None,
    "v": [1, None, 3],
    "m": [[1, None], [None, 4.5]],
    "d": {"a": [None, 2.5], "b": [None, "y"], "c": [None, True], "e": [1, None]},
}
EMPTY = {"l": False, "n": 0, "i": 0, "s": "", "v": [], "m": [], "d": {}}
STRINGS = {**REGULAR, "v": ["é", None, "日本", ""], "m": [["a", "b"], [None, "ü"]], "d": {"only": ["", None]}}


async def publish(server: WebNode, http: aiohttp.ClientSession, definition: dict[str, Any]) -> str:
    name = unique("types")
    headers = await server.headers(http)
    async with http.post(f"{server.url}/services/{name}/1.0", json=definition, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    return name


async def consume(server: WebNode, http: aiohttp.ClientSession, name: str, body: Any) -> tuple[int, Any]:
    headers = {**(await server.headers(http)), "Content-Type": "application/json"}
    data = io.BytesIO(orjson.dumps(body))  # a stream: aiohttp warns about large raw bodies
    async with http.post(f"{server.url}/api/{name}/1.0", data=data, headers=headers) as resp:
        return resp.status, await resp.json(loads=orjson.loads)


def echo_service(runtime: str) -> dict[str, Any]:
    return {
        "code": ECHO[runtime],
        "runtimeType": runtime,
        "inputParameterDefinitions": PARAMS,
        "outputParameterDefinitions": [*PARAMS, {"name": "cls", "type": "vector"}],
    }


@pytest.mark.parametrize("runtime", ["R", "Python"])
async def test_every_type_round_trips(server: WebNode, http: aiohttp.ClientSession, runtime: str) -> None:
    name = await publish(server, http, echo_service(runtime))
    received = {
        "R": ["logical", "numeric", "integer", "character", "numeric", "matrix", "data.frame"],
        "Python": ["bool", "float", "int", "str", "ndarray", "matrix", "DataFrame"],
    }
    for inputs in (REGULAR, MISSING, EMPTY, STRINGS):
        status, result = await consume(server, http, name, inputs)
        assert status == 200, result
        assert result["success"], result
        outputs = result["outputParameters"]
        assert {k: outputs[k] for k in TYPES} == inputs
        if inputs is REGULAR:
            assert outputs["cls"] == received[runtime]


async def test_r_sees_jsonlite_types(server: WebNode, http: aiohttp.ClientSession) -> None:
    """Whole numbers make an integer vector, any fraction numeric, strings character, null NA."""
    code = "kinds <- vapply(list(a, b, c, e, f), function(x) typeof(x), ''); nas <- sum(is.na(b)); dims <- dim(m)"
    definition = {
        "code": code,
        "runtimeType": "R",
        "inputParameterDefinitions": [
            *({"name": n, "type": "vector"} for n in "abcef"),
            {"name": "m", "type": "matrix"},
        ],
        "outputParameterDefinitions": [
            {"name": "kinds", "type": "vector"},
            {"name": "nas", "type": "integer"},
            {"name": "dims", "type": "vector"},
        ],
    }
    name = await publish(server, http, definition)
    body = {"a": [1, 2], "b": [1, None, 2.5], "c": ["x", None], "e": [True, None], "f": [None], "m": [[1, 2, 3]]}
    status, result = await consume(server, http, name, body)
    assert status == 200 and result["success"], result
    outputs = result["outputParameters"]
    assert outputs == {"kinds": ["integer", "double", "character", "logical", "logical"], "nas": 1, "dims": [1, 3]}


async def test_factors_and_dates_come_back_from_r_as_strings(server: WebNode, http: aiohttp.ClientSession) -> None:
    code = """
f <- factor(c("lo", "hi", NA, "lo"))
days <- as.Date(c("2020-01-02", NA, "1969-12-31"))
when <- as.POSIXct("2020-01-02 03:04:05", tz = "UTC")
frame <- data.frame(f = factor(c("a", "b")), d = as.Date(c("2020-02-29", "2021-12-31")),
                    t = as.POSIXct(c("2020-01-02 03:04:05", NA), tz = "UTC"), stringsAsFactors = TRUE)
level <- f[2]
odd <- c(NaN, Inf, -Inf, NA, 1)
"""
    definition = {
        "code": code,
        "runtimeType": "R",
        "outputParameterDefinitions": [
            {"name": "f", "type": "vector"},
            {"name": "days", "type": "vector"},
            {"name": "when", "type": "character"},
            {"name": "frame", "type": "data.frame"},
            {"name": "level", "type": "character"},
            {"name": "odd", "type": "vector"},
        ],
    }
    name = await publish(server, http, definition)
    status, result = await consume(server, http, name, {})
    assert status == 200 and result["success"], result
    assert result["outputParameters"] == {
        "odd": [None, None, None, None, 1],
        "f": ["lo", "hi", None, "lo"],
        "days": ["2020-01-02", None, "1969-12-31"],
        "when": "2020-01-02T03:04:05+00:00",
        "frame": {
            "f": ["a", "b"],
            "d": ["2020-02-29", "2021-12-31"],
            "t": ["2020-01-02T03:04:05+00:00", None],
        },
        "level": "hi",
    }


async def test_pandas_and_numpy_dates_come_back_as_iso(server: WebNode, http: aiohttp.ClientSession) -> None:
    code = """
import datetime, numpy as np, pandas as pd
frame = pd.DataFrame({
    "t": pd.to_datetime(["2020-01-02 03:04:05", None]),
    "d": [datetime.date(2020, 2, 29), None],
    "c": pd.Categorical(["a", None]),
    "f": [float("nan"), float("inf")],
})
stamps = np.array(["2020-01-02", "NaT"], dtype="datetime64[ns]")
when = pd.Timestamp("2020-01-02T03:04:05Z")
nothing = float("nan")
"""
    definition = {
        "code": code,
        "runtimeType": "Python",
        "outputParameterDefinitions": [
            {"name": "frame", "type": "data.frame"},
            {"name": "stamps", "type": "vector"},
            {"name": "when", "type": "character"},
            {"name": "nothing", "type": "numeric"},
        ],
    }
    name = await publish(server, http, definition)
    status, result = await consume(server, http, name, {})
    assert status == 200 and result["success"], result
    assert result["outputParameters"] == {
        "frame": {"t": ["2020-01-02T03:04:05", None], "d": ["2020-02-29", None], "c": ["a", None], "f": [None, None]},
        "stamps": ["2020-01-02T00:00:00", None],
        "when": "2020-01-02T03:04:05+00:00",
        "nothing": None,
    }


@pytest.mark.parametrize("runtime", ["R", "Python"])
async def test_100k_row_data_frame_round_trips(
    onebox_server: WebNode, http: aiohttp.ClientSession, runtime: str
) -> None:
    rows = 100_000
    frame = {
        "x": [i * 0.5 if i % 10 else None for i in range(rows)],
        "k": list(range(rows)),
        "s": [f"row-{i}-é" if i % 7 else None for i in range(rows)],
        "b": [i % 2 == 0 for i in range(rows)],
    }
    code = {"R": "out <- d; n <- nrow(d)", "Python": "out = d\nn = len(d)"}[runtime]
    definition = {
        "code": code,
        "runtimeType": runtime,
        "inputParameterDefinitions": [{"name": "d", "type": "data.frame"}],
        "outputParameterDefinitions": [{"name": "out", "type": "data.frame"}, {"name": "n", "type": "integer"}],
    }
    name = await publish(onebox_server, http, definition)
    status, result = await consume(onebox_server, http, name, {"d": frame})
    assert status == 200 and result["success"], result["errorMessage"]
    assert result["outputParameters"]["n"] == rows
    assert result["outputParameters"]["out"] == frame


@pytest.mark.parametrize("runtime", ["R", "Python"])
async def test_ill_typed_inputs_get_400_naming_the_parameter(
    server: WebNode, http: aiohttp.ClientSession, runtime: str
) -> None:
    name = await publish(server, http, echo_service(runtime))
    bad = [
        ("l", "yes"),
        ("n", "1.5"),
        ("i", 1.5),
        ("s", 5),
        ("v", [1, [2]]),
        ("v", {"a": 1}),
        ("m", [[1], [2, 3]]),
        ("m", [1, 2]),
        ("d", [1, 2]),
        ("d", {"a": [1], "b": [1, 2]}),
        ("d", {"a": [{"nested": 1}]}),
    ]
    for field, value in bad:
        status, error = await consume(server, http, name, {**REGULAR, field: value})
        assert status == 400, (field, value, error)
        assert_error(error, 400)
        assert error["fields"] == field and f"'{field}'" in error["message"]


@pytest.mark.parametrize("runtime", ["R", "Python"])
async def test_wrong_output_type_fails_naming_the_parameter(
    server: WebNode, http: aiohttp.ClientSession, runtime: str
) -> None:
    cases = {
        "R": [
            ("numeric", 'out <- "abc"'),
            ("integer", "out <- 1.5"),
            ("logical", "out <- c(TRUE, FALSE)"),
            ("vector", "out <- function(x) x"),
            ("data.frame", "out <- 1:3"),
            ("matrix", "out <- data.frame(a = 1)"),
        ],
        "Python": [
            ("numeric", 'out = "abc"'),
            ("integer", "out = 1.5"),
            ("logical", "out = [True, False]"),
            ("data.frame", "out = [1, 2, 3]"),
            ("vector", "import pandas as pd\nout = pd.DataFrame({'a': [1]})"),
        ],
    }[runtime]
    for type_name, code in cases:
        definition = {
            "code": code,
            "runtimeType": runtime,
            "outputParameterDefinitions": [{"name": "out", "type": type_name}],
        }
        name = await publish(server, http, definition)
        status, result = await consume(server, http, name, {})
        assert status == 200, result
        assert result["success"] is False, (code, result)
        assert result["errorMessage"].startswith(f"output 'out' ({type_name}): "), result["errorMessage"]
        assert result["outputParameters"] == {}


async def test_integer_outside_r_range_fails_naming_the_input(server: WebNode, http: aiohttp.ClientSession) -> None:
    definition = {
        "code": "j <- i",
        "runtimeType": "R",
        "inputParameterDefinitions": [{"name": "i", "type": "integer"}],
        "outputParameterDefinitions": [{"name": "j", "type": "integer"}],
    }
    name = await publish(server, http, definition)
    status, result = await consume(server, http, name, {"i": 2**40})
    assert status == 200 and result["success"] is False
    assert result["errorMessage"].startswith("input 'i' (integer): ")
    status, result = await consume(server, http, name, {"i": -(2**31) + 1})
    assert result["success"] and result["outputParameters"] == {"j": -(2**31) + 1}


@pytest.mark.parametrize("runtime", ["R", "Python"])
async def test_outputs_named_by_aliases_and_records(server: WebNode, http: aiohttp.ClientSession, runtime: str) -> None:
    """The Python type names work for both runtimes; a list of records builds a data.frame."""
    code = {"R": "rows <- nrow(d); total <- sum(d$a, na.rm = TRUE)", "Python": "rows = len(d)\ntotal = d['a'].sum()"}
    definition = {
        "code": code[runtime],
        "runtimeType": runtime,
        "inputParameterDefinitions": [{"name": "d", "type": "pandas.DataFrame"}],
        "outputParameterDefinitions": [{"name": "rows", "type": "int"}, {"name": "total", "type": "float"}],
    }
    name = await publish(server, http, definition)
    status, result = await consume(server, http, name, {"d": [{"a": 1, "b": "x"}, {"a": 2.5}, {"b": "z"}]})
    assert status == 200 and result["success"], result
    assert result["outputParameters"] == {"rows": 3, "total": 3.5}
