"""R web services through the whole stack: runtimeType defaults to R; R users' code works as on ML Server."""

from __future__ import annotations

import base64

import aiohttp

from tests.support import WebNode
from tests.test_services import consume, publish

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_r_add_with_default_runtime(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    definition = {
        "code": "result <- x + y",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
    }
    name = await publish(http, server, auth, definition)
    result = await consume(http, server, auth, name, {"x": 1, "y": 2})
    assert result["success"] is True, result
    assert result["outputParameters"] == {"result": 3}


async def test_r_data_frame_in_and_out(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    definition = {
        "runtimeType": "R",
        "initCode": "scale <- 10",
        "code": "out <- data.frame(a = df$a * scale, b = toupper(df$b), stringsAsFactors = FALSE)\nn <- nrow(df)",
        "inputParameterDefinitions": [{"name": "df", "type": "data.frame"}],
        "outputParameterDefinitions": [{"name": "out", "type": "data.frame"}, {"name": "n", "type": "integer"}],
    }
    name = await publish(http, server, auth, definition)
    result = await consume(http, server, auth, name, {"df": {"a": [1, 2], "b": ["x", "y"]}})
    assert result["success"] is True, result
    assert result["outputParameters"] == {"out": {"a": [10, 20], "b": ["X", "Y"]}, "n": 2}


async def test_r_plot_as_output_file_and_errors(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    definition = {
        "runtimeType": "R",
        "code": "png('plot.png')\nplot(x, x^2)\ninvisible(dev.off())\nprint('plotted')",
        "inputParameterDefinitions": [{"name": "x", "type": "vector"}],
        "outputFileNames": ["plot.png", "absent.csv"],
    }
    name = await publish(http, server, auth, definition)
    result = await consume(http, server, auth, name, {"x": [1, 2, 3]})
    assert result["success"] is True, result
    assert base64.b64decode(result["outputFiles"]["plot.png"]).startswith(PNG_MAGIC)
    assert result["outputFiles"]["absent.csv"] is None
    assert "plot.png" in result["changedFiles"]
    assert "plotted" in result["consoleOutput"]
    name = await publish(http, server, auth, {**definition, "code": "stop('bad input')", "outputFileNames": []})
    result = await consume(http, server, auth, name, {"x": [1]})
    assert result["success"] is False and "bad input" in result["errorMessage"]


async def test_r_service_restores_its_snapshot_before_init_code(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    async with http.post(f"{server.url}/sessions", json={"runtimeType": "R"}, headers=auth) as resp:
        assert resp.status in (200, 201), await resp.text()
        session = (await resp.json())["sessionId"]
    code = "weights <- c(1, 2)\nwriteLines('0.5', 'bias.txt')"
    async with http.post(f"{server.url}/sessions/{session}/execute", json={"code": code}, headers=auth) as resp:
        assert (await resp.json())["success"] is True
    async with http.post(f"{server.url}/sessions/{session}/snapshot", json={"name": "r"}, headers=auth) as resp:
        snapshot = (await resp.json())["snapshotId"]
    async with http.delete(f"{server.url}/sessions/{session}", headers=auth):
        pass
    definition = {
        "runtimeType": "R",
        "snapshotId": snapshot,
        "initCode": "bias <- as.numeric(readLines('bias.txt'))",
        "code": "result <- sum(weights * x) + bias",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
    }
    name = await publish(http, server, auth, definition)
    async with http.delete(f"{server.url}/snapshots/{snapshot}", headers=auth) as resp:
        assert resp.status == 200
    result = await consume(http, server, auth, name, {"x": 2})
    assert result["outputParameters"] == {"result": 6.5}, result
