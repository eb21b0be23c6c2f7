"""Batch executions (semantics §3): start, status, partial results, files, cancel, errors, restart."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import WebNode, start_web_node, unique, wait_until
from tests.test_services import ADD, expect_error, publish, user_headers

WRITER = {
    "runtimeType": "Python",
    "code": "with open('out.txt', 'w') as f:\n    f.write(str(x * 2))\nresult = x * 2",
    "inputParameterDefinitions": [{"name": "x", "type": "integer"}],
    "outputParameterDefinitions": [{"name": "result", "type": "integer"}],
    "outputFileNames": ["out.txt", "never.png"],
}
SLOW = {
    "runtimeType": "Python",
    "code": "import time\ntime.sleep(delay)\nresult = x",
    "inputParameterDefinitions": [{"name": "x", "type": "integer"}, {"name": "delay", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "integer"}],
}


@pytest.fixture
async def other_user(server: WebNode) -> dict[str, str]:
    return await user_headers(server, "Contributor")


def batch_url(server: WebNode, name: str, suffix: str = "") -> str:
    return f"{server.url}/api/{name}/1.0/batch{suffix}"


async def start(
    http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str], name: str, records: list[Any], parallel: int
) -> str:
    async with http.post(batch_url(server, name, f"?parallelCount={parallel}"), json=records, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 202, body
    assert body["batchExecutionId"] == body["BatchExecutionId"]
    return str(body["BatchExecutionId"])


async def status(
    http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str], name: str, execution: str, query: str = ""
) -> dict[str, Any]:
    async with http.get(batch_url(server, name, f"/{execution}{query}"), headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert isinstance(body, dict)
    return body


async def wait_complete(
    http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str], name: str, execution: str, timeout: float = 60
) -> dict[str, Any]:
    async def complete() -> dict[str, Any] | None:
        body = await status(http, server, auth, name, execution)
        return body if body["state"] == "Complete" else None

    result: dict[str, Any] = await wait_until(complete, timeout=timeout, what=f"batch {execution} complete")
    return result


async def test_batch_runs_every_record_with_files(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server, auth, WRITER)
    execution = await start(http, server, auth, name, [{"x": i} for i in range(5)], parallel=2)
    body = await wait_complete(http, server, auth, name, execution)
    assert body["totalItemCount"] == body["completedItemCount"] == 5
    results = body["batchExecutionResults"]
    assert [r["outputParameters"] for r in results] == [{"result": 2 * i} for i in range(5)]
    assert all(r["success"] and r["outputFiles"]["never.png"] is None for r in results)
    assert set(results[0]) == {
        "success",
        "errorMessage",
        "outputParameters",
        "outputFiles",
        "consoleOutput",
        "changedFiles",
    }
    # Microsoft's client spells the query showPartialResult; both are accepted.
    assert (await status(http, server, auth, name, execution, "?showPartialResult=false"))[
        "batchExecutionResults"
    ] == results
    async with http.get(batch_url(server, name), headers=auth) as resp:
        assert execution in await resp.json()
    for index in (0, 3):
        async with http.get(batch_url(server, name, f"/{execution}/{index}/files"), headers=auth) as resp:
            assert await resp.json() == ["out.txt"]
        async with http.get(batch_url(server, name, f"/{execution}/{index}/files/out.txt"), headers=auth) as resp:
            assert resp.status == 200
            assert await resp.read() == str(index * 2).encode()
        assert base64.b64decode(results[index]["outputFiles"]["out.txt"]) == str(index * 2).encode()
    async with http.delete(batch_url(server, name, f"/{execution}"), headers=auth) as resp:
        assert resp.status == 200 and await resp.json() == [execution]
    async with http.get(batch_url(server, name, f"/{execution}"), headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(batch_url(server, name), headers=auth) as resp:
        assert execution not in await resp.json()


async def test_partial_results_and_cancel_while_running(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server, auth, SLOW)
    records = [{"x": i, "delay": 0.05 if i == 0 else 0.4} for i in range(4)]
    execution = await start(http, server, auth, name, records, parallel=1)

    async def first_done() -> dict[str, Any] | None:
        body = await status(http, server, auth, name, execution, "?showPartialResults=true")
        return body if body["completedItemCount"] >= 1 else None

    partial = await wait_until(first_done, timeout=30, what="the first record")
    assert partial["state"] == "InProgress" and partial["totalItemCount"] == 4
    assert len(partial["batchExecutionResults"]) == 4
    assert partial["batchExecutionResults"][0]["outputParameters"] == {"result": 0}
    assert partial["batchExecutionResults"][-1] is None  # not run yet
    hidden = await status(http, server, auth, name, execution, "?showPartialResults=false")
    assert hidden["batchExecutionResults"] == [] and hidden["completedItemCount"] < 4
    async with http.delete(batch_url(server, name, f"/{execution}"), headers=auth) as resp:
        assert resp.status == 200
    async with http.get(batch_url(server, name, f"/{execution}"), headers=auth) as resp:
        await expect_error(resp, 404)


async def test_failing_records_report_success_false(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    name = await publish(http, server, auth, {**ADD, "code": "result = x / y"})
    execution = await start(http, server, auth, name, [{"x": 1, "y": 0}, {"x": 1, "y": 2}], parallel=5)
    results = (await wait_complete(http, server, auth, name, execution))["batchExecutionResults"]
    assert results[0]["success"] is False and "ZeroDivisionError" in results[0]["errorMessage"]
    assert results[1]["outputParameters"] == {"result": 0.5}


async def test_batch_errors(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], other_user: dict[str, str]
) -> None:
    name = await publish(http, server, auth, WRITER)
    missing = unique("none")
    for method, url in (("POST", batch_url(server, missing)), ("GET", batch_url(server, missing))):
        async with http.request(method, url, json=[{"x": 1}], headers=auth) as resp:
            await expect_error(resp, 404)
    bad_bodies: list[tuple[Any, str | None]] = [
        ({"x": 1}, None),
        ([], None),
        ([{"x": 1}, {"x": "two"}], "x"),
        ([{"x": 1}, {"y": 2}], "y"),
        ([{"x": 1}, 5], None),
    ]
    for body, field in bad_bodies:
        async with http.post(batch_url(server, name), json=body, headers=auth) as resp:
            error = await expect_error(resp, 400, field=field)
        if field:
            assert error["message"].startswith("record 1: ")
    async with http.post(batch_url(server, name), data=b"[{", headers=auth) as resp:
        await expect_error(resp, 400)
    for count in ("0", "-3", "many"):
        async with http.post(batch_url(server, name, f"?parallelCount={count}"), json=[{"x": 1}], headers=auth) as r:
            await expect_error(r, 400, field="parallelCount")
    execution = await start(http, server, auth, name, [{"x": 1}], parallel=1000)  # capped, not refused
    await wait_complete(http, server, auth, name, execution)
    async with http.get(batch_url(server, name, f"/{execution}?showPartialResults=maybe"), headers=auth) as resp:
        await expect_error(resp, 400, field="showPartialResults")
    async with http.get(batch_url(server, name, f"/{unique('exec')}"), headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.delete(batch_url(server, name, f"/{unique('exec')}"), headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(batch_url(server, name, f"/{execution}/one/files"), headers=auth) as resp:
        await expect_error(resp, 400, field="index")
    async with http.get(batch_url(server, name, f"/{execution}/7/files"), headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(batch_url(server, name, f"/{execution}/0/files/never.png"), headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(batch_url(server, name, f"/{execution}/0/files/other.txt"), headers=auth) as resp:
        await expect_error(resp, 404)
    async with http.get(batch_url(server, name, f"/{execution}")) as resp:
        await expect_error(resp, 401)
    # Another (non-Owner) user neither sees nor cancels this execution.
    other = other_user
    async with http.get(batch_url(server, name), headers=other) as resp:
        assert await resp.json() == []
    async with http.get(batch_url(server, name, f"/{execution}"), headers=other) as resp:
        await expect_error(resp, 404)
    async with http.delete(batch_url(server, name, f"/{execution}"), headers=other) as resp:
        await expect_error(resp, 404)
    # Deleting the service deletes its executions.
    async with http.delete(f"{server.url}/services/{name}/1.0", headers=auth) as resp:
        assert resp.status == 200
    await publish(http, server, auth, WRITER, name=name)
    async with http.get(batch_url(server, name), headers=auth) as resp:
        assert await resp.json() == []


async def test_a_restarted_web_node_finishes_the_batch(
    tmp_path: Path, compute_node: str, http: aiohttp.ClientSession
) -> None:
    """State lives in the store: kill the web node mid-batch; a new one on the same store completes it.

    The web nodes cap parallelCount at 1, so the records also show that the cap holds.
    """
    env = {"O16N_BATCH_LEASE_SECONDS": "1", "O16N_BATCH_MAX_PARALLEL_COUNT": "1"}
    timed = {
        **SLOW,
        "code": "import time\nstart = time.time()\ntime.sleep(delay)\nend = time.time()\nresult = x",
        "outputParameterDefinitions": [
            {"name": "result", "type": "integer"},
            {"name": "start", "type": "numeric"},
            {"name": "end", "type": "numeric"},
        ],
    }
    web = await start_web_node(tmp_path / "web", [compute_node], **env)
    try:
        auth = await web.headers(http)
        name = await publish(http, web, auth, timed)
        records = [{"x": i, "delay": 0.3} for i in range(6)]
        execution = await start(http, web, auth, name, records, parallel=6)

        async def some_done() -> bool:
            return bool((await status(http, web, auth, name, execution))["completedItemCount"] >= 1)

        await wait_until(some_done, timeout=30, what="the first record")
        web.process.kill()
    finally:
        web.process.stop()
    again = await start_web_node(tmp_path / "web", [compute_node], **env)
    try:
        auth = await again.headers(http)
        body = await wait_complete(http, again, auth, name, execution)
        outputs = [r["outputParameters"] for r in body["batchExecutionResults"]]
        assert [o["result"] for o in outputs] == list(range(6))
        assert all(r["success"] for r in body["batchExecutionResults"])
        spans = sorted((o["start"], o["end"]) for o in outputs)
        assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), spans
    finally:
        again.process.stop()


async def test_records_finishing_together_complete_the_execution(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    """Regression: on Postgres, two last records stored at once each missed the other and the state stuck."""
    name = await publish(http, server, auth, ADD)
    for _ in range(10):
        execution = await start(http, server, auth, name, [{"x": i, "y": 1} for i in range(12)], parallel=12)
        body = await wait_complete(http, server, auth, name, execution, timeout=30)
        assert [r["outputParameters"]["result"] for r in body["batchExecutionResults"]] == [i + 1 for i in range(12)]
