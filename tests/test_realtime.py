"""Realtime web services through real processes: ONNX models scored in the compute node, pickles in shells."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest
from openapi_spec_validator import validate
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from common.pb import realtime_pb2 as rpb
from common.pb import realtime_pb2_grpc as rpb_grpc
from computenode.onnx_models import OnnxModel
from computenode.realtime import INLINE_ROWS, INLINE_RUN_SECONDS, OnnxEntry
from tests.support import (
    WebNode,
    create_user,
    grpc_serving,
    login,
    spawn,
    start_compute_node,
    start_web_node,
    unique,
    wait_until,
)

COLUMNS = ["sepal", "petal", "width"]
RNG = np.random.default_rng(7)
X_TRAIN = RNG.normal(size=(200, 3)).astype(np.float32)
X_TEST = RNG.normal(size=(7, 3)).astype(np.float32)


def assert_error(body: dict[str, Any], status: int) -> None:
    assert body["code"] == status, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str) and isinstance(body["exceptionType"], str)
    assert "Traceback" not in str(body)


def regressor() -> tuple[Any, bytes]:
    """A forest on one 2-D input `X` [N, 3]: inputData gives three feature columns in order."""
    y = X_TRAIN @ np.array([1.5, -2.0, 0.5], dtype=np.float32) + X_TRAIN[:, 0] ** 2
    model = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(X_TRAIN, y)
    onx = convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 3]))])
    return model, onx.SerializeToString()


def linear(scale: float) -> tuple[Any, bytes]:
    model = LinearRegression().fit(X_TRAIN, X_TRAIN @ np.array([scale, 1.0, -1.0], dtype=np.float32))
    return model, convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 3]))]).SerializeToString()


def classifier() -> tuple[Any, bytes]:
    """A pipeline with one named input per column: inputData is matched by name."""
    import pandas as pd

    frame = pd.DataFrame(X_TRAIN, columns=COLUMNS)
    labels = (X_TRAIN[:, 0] + X_TRAIN[:, 1] > 0).astype(np.int64) + (X_TRAIN[:, 2] > 1).astype(np.int64)
    model = Pipeline(
        [
            ("scale", ColumnTransformer([("num", StandardScaler(), COLUMNS)])),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, labels)
    onx = convert_sklearn(model, initial_types=[(c, FloatTensorType([None, 1])) for c in COLUMNS])
    return model, onx.SerializeToString()


def input_data(x: np.ndarray) -> dict[str, Any]:
    return {"inputData": {c: [float(v) for v in x[:, i]] for i, c in enumerate(COLUMNS)}}


async def publish(
    http: aiohttp.ClientSession,
    server: WebNode,
    path: str,
    model: bytes | None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    if model is not None:
        form.add_field("model", model, filename="model.bin", content_type="application/octet-stream")
    headers = headers or await server.headers(http)
    async with http.request(method, f"{server.url}{path}", data=form, headers=headers) as resp:
        return resp.status, await resp.json()


async def consume(http: aiohttp.ClientSession, server: WebNode, name: str, body: Any) -> tuple[int, Any]:
    headers = await server.headers(http)
    async with http.post(f"{server.url}/api/{name}/1.0", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_onnx_regression_scores_like_sklearn(server: WebNode, http: aiohttp.ClientSession) -> None:
    model, onx = regressor()
    name = unique("forest")
    status, body = await publish(http, server, f"/realtime-services/{name}/1.0", onx, description="a forest")
    assert status == 201, body
    assert body == f"/api/{name}/1.0"
    headers = await server.headers(http)
    async with http.get(f"{server.url}/services/{name}/1.0", headers=headers) as resp:
        record = await resp.json()
    assert record["runtimeType"] == "Realtime"
    assert record["description"] == "a forest" and record["operationId"] == "consume"
    assert record["inputParameterDefinitions"] == [{"name": "inputData", "type": "data.frame"}]
    assert record["outputParameterDefinitions"] == [{"name": "outputData", "type": "data.frame"}]
    assert record["myPermissionOnService"] == "read/write"

    status, result = await consume(http, server, name, input_data(X_TEST))
    assert status == 200, result
    assert result["success"] is True and result["errorMessage"] == ""
    envelope = {"success", "errorMessage", "outputParameters", "outputFiles", "consoleOutput", "changedFiles"}
    assert set(result) == envelope
    predicted = result["outputParameters"]["outputData"]["variable"]
    assert predicted == pytest.approx(model.predict(X_TEST).tolist(), rel=1e-5, abs=1e-5)
    # data.frame cells are scalars: rows of values in one column are refused before the model.
    status, error = await consume(http, server, name, {"inputData": {"X": X_TEST.tolist()}})
    assert status == 400 and error["fields"] == "inputData"


async def test_onnx_classifier_gives_labels_and_probabilities(server: WebNode, http: aiohttp.ClientSession) -> None:
    import pandas as pd

    model, onx = classifier()
    name = unique("clf")
    status, body = await publish(http, server, f"/realtime-services/{name}/1.0", onx)
    assert status == 201, body
    # Columns are matched by name, in any order.
    data = input_data(X_TEST)["inputData"]
    status, result = await consume(http, server, name, {"inputData": dict(reversed(list(data.items())))})
    assert status == 200, result
    out = result["outputParameters"]["outputData"]
    frame = pd.DataFrame(X_TEST, columns=COLUMNS)
    assert out["output_label"] == model.predict(frame).tolist()
    proba = model.predict_proba(frame)
    for j, label in enumerate(model.classes_):
        assert out[f"output_probability_{label}"] == pytest.approx(proba[:, j].tolist(), rel=1e-5, abs=1e-5)
    async with http.get(f"{server.url}/api/{name}/1.0/swagger.json", headers=await server.headers(http)) as resp:
        swagger = await resp.json()
    validate(swagger)
    data_in = swagger["definitions"]["InputParameters"]["properties"]["inputData"]
    assert data_in["required"] == COLUMNS
    assert data_in["properties"]["sepal"] == {"type": "array", "items": {"type": "number"}, "description": "numeric"}
    data_out = swagger["definitions"]["OutputParameters"]["properties"]["outputData"]["properties"]
    assert set(data_out) == set(out)  # the columns the service answered with
    # A single row given as scalars works too.
    status, result = await consume(http, server, name, {"inputData": {c: 0.5 for c in COLUMNS}})
    assert status == 200 and len(result["outputParameters"]["outputData"]["output_label"]) == 1


async def test_bad_models_get_400_listing_formats(server: WebNode, http: aiohttp.ClientSession) -> None:
    _, onx = regressor()
    cases = [
        (b"blob\x00\x01rxSerializeModel", "rxSerializeModel"),
        (b"\x00\x01not a model at all", "unrecognised"),
        (b"", "empty"),
        (onx[: len(onx) // 2], "not a valid ONNX model"),
        (pickle.dumps({"not": "a model"}), "no predict method"),
    ]
    for content, words in cases:
        name = unique("bad")
        status, body = await publish(http, server, f"/realtime-services/{name}/1.0", content)
        assert status == 400, (words, body)
        assert_error(body, 400)
        assert words in body["message"], body
        if words in ("rxSerializeModel", "unrecognised"):
            assert "ONNX" in body["message"] and "pickled" in body["message"]
        headers = await server.headers(http)
        async with http.get(f"{server.url}/services/{name}/1.0", headers=headers) as resp:
            assert resp.status == 404  # nothing was published
    name = unique("bad")
    status, body = await publish(http, server, f"/realtime-services/{name}/1.0", None, description="no model")
    assert status == 400 and body["fields"] == "model"
    status, body = await publish(http, server, f"/realtime-services/{name}/1.0", onx, operationId="not an id")
    assert status == 400 and body["fields"] == "operationId"
    headers = await server.headers(http)
    async with http.post(f"{server.url}/realtime-services/{name}/1.0", json={"model": "x"}, headers=headers) as resp:
        assert resp.status == 400
        assert "multipart/form-data" in (await resp.json())["message"]
    async with http.post(f"{server.url}/realtime-services/bad name/1.0", data=b"", headers=headers) as resp:
        assert resp.status == 400


async def test_bad_inputs_get_400_naming_them(server: WebNode, http: aiohttp.ClientSession) -> None:
    _, onx = classifier()
    name = unique("clf")
    status, _ = await publish(http, server, f"/realtime-services/{name}/1.0", onx)
    assert status == 201
    good = input_data(X_TEST[:2])["inputData"]
    cases: list[tuple[Any, str | None, str]] = [
        ({}, "inputData", "missing"),
        ({"inputData": good, "other": 1}, "other", "unknown"),
        ({"inputData": {**good, "extra": [1, 2]}}, "extra", "extra"),
        ({"inputData": {k: v for k, v in good.items() if k != "petal"}}, "petal", "petal"),
        ({"inputData": {**good, "sepal": ["a", "b"]}}, "sepal", "expected numeric"),
        ({"inputData": {**good, "sepal": [True, False]}}, "sepal", "expected numeric"),
        ({"inputData": {**good, "sepal": [1.0]}}, "inputData", "equal length"),
        ({"inputData": [1, 2, 3]}, "inputData", "inputData"),
        ([1, 2], None, "object"),
    ]
    for body, field, words in cases:
        status, error = await consume(http, server, name, body)
        assert status == 400, (body, error)
        assert_error(error, 400)
        if field:
            assert error.get("fields") == field, error
        assert words in error["message"], error
    # A model with one 2-D input takes its features as columns, in order, and says how many.
    _, onx = regressor()
    name = unique("forest")
    assert (await publish(http, server, f"/realtime-services/{name}/1.0", onx))[0] == 201
    status, error = await consume(http, server, name, {"inputData": {"a": [1.0], "b": [2.0]}})
    assert status == 400 and "3 feature column(s)" in error["message"] and "a, b" in error["message"]


async def test_publish_rules_and_lifecycle(server: WebNode, http: aiohttp.ClientSession) -> None:
    _, onx = linear(2.0)
    headers = await server.headers(http)
    async with http.post(f"{server.url}/realtime-services/x/1.0", data=b"") as resp:
        assert resp.status == 401
        assert_error(await resp.json(), 401)
    name = unique("lin")
    assert (await publish(http, server, f"/realtime-services/{name}/1.0", onx))[0] == 201
    status, body = await publish(http, server, f"/realtime-services/{name}/1.0", onx)
    assert status == 409
    assert_error(body, 409)
    status, version = await publish(http, server, f"/realtime-services/{name}", onx)
    assert status == 201 and len(version) == 36
    async with http.get(f"{server.url}/services/{name}", headers=headers) as resp:
        versions = await resp.json()
    assert {v["version"] for v in versions} == {"1.0", version}
    assert all(v["runtimeType"] == "Realtime" for v in versions)
    status, body = await publish(http, server, f"/realtime-services/{unique('none')}/1.0", onx, method="PATCH")
    assert status == 404
    assert_error(body, 404)
    python = unique("py")
    definition = {"code": "y = 1", "runtimeType": "Python"}
    async with http.post(f"{server.url}/services/{python}/1.0", json=definition, headers=headers) as resp:
        assert resp.status == 201
    status, body = await publish(http, server, f"/realtime-services/{python}/1.0", onx, method="PATCH")
    assert status == 400 and "not a realtime" in body["message"]
    async with http.patch(f"{server.url}/services/{name}/1.0", json={"code": "x = 1"}, headers=headers) as resp:
        assert resp.status == 400 and "/realtime-services/" in (await resp.json())["message"]
    async with http.get(f"{server.url}/api/{name}/1.0/swagger.json", headers=headers) as resp:
        assert resp.status == 200
        swagger = await resp.json()
    assert swagger["paths"][f"/api/{name}/1.0"]["post"]["operationId"] == "consume"
    assert swagger["definitions"]["InputParameters"]["properties"]["inputData"]["type"] == "object"
    assert swagger["definitions"]["OutputParameters"]["properties"]["outputData"]["type"] == "object"
    assert (
        "3 numeric feature columns"
        in swagger["definitions"]["InputParameters"]["properties"]["inputData"]["description"]
    )
    validate(swagger)
    async with http.delete(f"{server.url}/services/{name}/1.0", headers=headers) as resp:
        assert resp.status == 200
    status, body = await consume(http, server, name, input_data(X_TEST))
    assert status == 404
    assert_error(body, 404)


async def test_patch_swaps_the_model_while_requests_run(server: WebNode, http: aiohttp.ClientSession) -> None:
    old_model, old = linear(2.0)
    new_model, new = linear(-3.0)
    name = unique("swap")
    assert (await publish(http, server, f"/realtime-services/{name}/1.0", old))[0] == 201
    expected_old = old_model.predict(X_TEST).tolist()
    expected_new = new_model.predict(X_TEST).tolist()

    async def score() -> list[float]:
        status, result = await consume(http, server, name, input_data(X_TEST))
        assert status == 200, result
        return list(result["outputParameters"]["outputData"]["variable"])

    running = [asyncio.ensure_future(score()) for _ in range(30)]
    status, body = await publish(
        http, server, f"/realtime-services/{name}/1.0", new, method="PATCH", description="second model"
    )
    assert status == 200, body
    for outcome in await asyncio.gather(*running):
        assert outcome == pytest.approx(expected_old, rel=1e-5) or outcome == pytest.approx(expected_new, rel=1e-5)
    assert await score() == pytest.approx(expected_new, rel=1e-5, abs=1e-5)
    headers = await server.headers(http)
    async with http.get(f"{server.url}/services/{name}/1.0", headers=headers) as resp:
        assert (await resp.json())["description"] == "second model"
    # Description only: the model stays.
    status, _ = await publish(http, server, f"/realtime-services/{name}/1.0", None, method="PATCH", operationId="go")
    assert status == 200
    assert await score() == pytest.approx(expected_new, rel=1e-5, abs=1e-5)


async def test_concurrent_requests_each_get_their_own_rows(server: WebNode, http: aiohttp.ClientSession) -> None:
    model, onx = regressor()
    name = unique("batch")
    assert (await publish(http, server, f"/realtime-services/{name}/1.0", onx))[0] == 201
    rows = RNG.normal(size=(64, 3)).astype(np.float32)
    expected = model.predict(rows)

    async def one(i: int) -> float:
        count = 1 + i % 3  # requests of 1 to 3 rows, scored together in batches
        status, result = await consume(http, server, name, input_data(np.repeat(rows[i : i + 1], count, axis=0)))
        assert status == 200, result
        values = result["outputParameters"]["outputData"]["variable"]
        assert len(values) == count
        return float(values[0])

    got = await asyncio.gather(*(one(i) for i in range(64)))
    assert got == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-5)
    # They were scored together: fewer model calls than requests.
    target = server.compute_uris[0].removeprefix("http://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rpb_grpc.RealtimeStub(channel)
        figures = await stub.GetModelFigures(rpb.ModelFiguresRequest(model_hash=hashlib.sha256(onx).hexdigest()))
    assert figures.requests >= 64
    assert figures.calls < figures.requests and figures.batched_requests > 0, figures


class _Recorder:
    """Pickles as: record os.getpid() in a file, then unpickle the real model."""

    def __init__(self, path: Path, model: Any) -> None:
        self.path, self.payload = str(path), pickle.dumps(model)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        source = (
            f"(open({self.path!r}, 'a').write(str(__import__('os').getpid()) + '\\n'), "
            f"__import__('pickle').loads({self.payload!r}))[1]"
        )
        return (eval, (source,))


async def test_pickled_model_runs_only_in_a_shell(server: WebNode, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=500).fit(X_TRAIN, (X_TRAIN[:, 0] > 0).astype(int))
    pids = tmp_path / "pids"
    name = unique("pkl")
    status, body = await publish(http, server, f"/realtime-services/{name}/1.0", pickle.dumps(_Recorder(pids, model)))
    assert status == 201, body
    assert pids.exists(), "the model was not loaded ahead at publish"
    data = {"inputData": {f"x{i}": [float(v) for v in X_TEST[:, i]] for i in range(3)}}
    status, result = await consume(http, server, name, data)
    assert status == 200, result
    out = result["outputParameters"]["outputData"]
    assert out["prediction"] == model.predict(X_TEST).tolist()
    assert out["probability_1"] == pytest.approx(model.predict_proba(X_TEST)[:, 1].tolist(), rel=1e-5, abs=1e-7)
    status, error = await consume(http, server, name, {"inputData": {"x0": [1.0], "x1": [2.0]}})
    assert status == 400 and "3 feature column(s)" in error["message"]
    assert_error(error, 400)
    recorded = {int(line) for line in pids.read_text().split()}
    assert recorded and os.getpid() not in recorded
    for pid in recorded:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"computenode.shells.python_child" in cmdline, cmdline  # a shell, not the compute node
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
        assert b"computenode" in parent_cmd and b"computenode.shells.python_child" not in parent_cmd


async def user(server: WebNode, http: aiohttp.ClientSession, role: str) -> dict[str, str]:
    """A new local user with `role`; returns its auth headers."""
    username, password = unique(role.lower()), "Us3r-Passw0rd!"
    await create_user(server, username, password, role)
    return {"Authorization": f"Bearer {await login(http, server.url, username, password)}"}


async def test_roles_and_ownership(server: WebNode, http: aiohttp.ClientSession) -> None:
    _, onx = linear(1.0)
    contributor = await user(server, http, "Contributor")
    reader = await user(server, http, "Reader")
    name = unique("owned")
    assert (await publish(http, server, f"/realtime-services/{name}/1.0", onx))[0] == 201
    for method, path, who in (
        ("POST", f"/realtime-services/{name}/2.0", contributor),  # another user's name
        ("PATCH", f"/realtime-services/{name}/1.0", contributor),  # another user's service
        ("POST", f"/realtime-services/{unique('r')}/1.0", reader),  # a role that may not publish
    ):
        status, body = await publish(http, server, path, onx, method=method, headers=who)
        assert status == 403, (method, path, body)
        assert_error(body, 403)
    async with http.post(f"{server.url}/api/{name}/1.0", json=input_data(X_TEST[:1]), headers=reader) as resp:
        assert resp.status == 200  # anyone may consume
    mine = unique("mine")
    status, _ = await publish(http, server, f"/realtime-services/{mine}/1.0", onx, headers=contributor)
    assert status == 201
    status, _ = await publish(
        http, server, f"/realtime-services/{mine}/1.0", None, "PATCH", contributor, description="d"
    )
    assert status == 200


async def test_versions_sharing_a_model_and_deletion(server: WebNode, http: aiohttp.ClientSession) -> None:
    model, onx = linear(5.0)
    headers = await server.headers(http)
    first, second = unique("shared"), unique("shared")
    for name in (first, second):
        assert (await publish(http, server, f"/realtime-services/{name}/1.0", onx))[0] == 201
    async with http.delete(f"{server.url}/services/{first}/1.0", headers=headers) as resp:
        assert resp.status == 200
    status, result = await consume(http, server, second, input_data(X_TEST))  # its model stays
    assert status == 200, result
    assert result["outputParameters"]["outputData"]["variable"] == pytest.approx(
        model.predict(X_TEST).tolist(), rel=1e-5
    )
    async with http.delete(f"{server.url}/services/{second}/1.0", headers=headers) as resp:
        assert resp.status == 200
    # The model was dropped with its last service; publishing the same bytes again stores and loads them anew.
    assert (await publish(http, server, f"/realtime-services/{first}/1.0", onx))[0] == 201
    status, result = await consume(http, server, first, input_data(X_TEST))
    assert status == 200, result


async def test_restarted_compute_node_gets_the_model_from_the_store(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = {"O16N_R_ENABLED": "false", "O16N_PYTHON_POOL_INITIAL_SIZE": "0", "O16N_PYTHON_POOL_MAX_SIZE": "1"}
    compute, uri = await start_compute_node(tmp_path / "compute", **env)
    web = await start_web_node(tmp_path / "web", [uri])
    try:
        model, onx = linear(4.0)
        name = unique("restart")
        assert (await publish(http, web, f"/realtime-services/{name}/1.0", onx))[0] == 201
        assert (await consume(http, web, name, input_data(X_TEST)))[0] == 200
        compute.stop()
        target = uri.removeprefix("http://")
        settings = {
            **env,
            "O16N_COMPUTE_HOST": "127.0.0.1",
            "O16N_COMPUTE_PORT": target.rsplit(":", 1)[1],
            "O16N_DATA_DIR": str(tmp_path / "compute2"),
        }
        compute = spawn("computenode", "computenode", settings, tmp_path / "compute2")
        await wait_until(lambda: grpc_serving(target), timeout=90, what="restarted compute node", process=compute)

        async def scored() -> list[float] | None:
            status, result = await consume(http, web, name, input_data(X_TEST))
            return list(result["outputParameters"]["outputData"]["variable"]) if status == 200 else None

        predicted = await wait_until(scored, timeout=30, what="scoring on the restarted node")
        assert predicted == pytest.approx(model.predict(X_TEST).tolist(), rel=1e-5, abs=1e-5)
    finally:
        web.process.stop()
        compute.stop()


async def test_batch_execution_of_a_realtime_service(server: WebNode, http: aiohttp.ClientSession) -> None:
    model, onx = regressor()
    name = unique("rtbatch")
    assert (await publish(http, server, f"/realtime-services/{name}/1.0", onx))[0] == 201
    headers = await server.headers(http)
    records = [input_data(X_TEST[i : i + 1]) for i in range(4)]
    records.append({"inputData": {"a": [1.0]}})  # a bad record fails alone
    async with http.post(f"{server.url}/api/{name}/1.0/batch", json=records, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
        execution = (await resp.json())["batchExecutionId"]

    async def complete() -> dict[str, Any] | None:
        async with http.get(f"{server.url}/api/{name}/1.0/batch/{execution}", headers=headers) as resp:
            body: dict[str, Any] = await resp.json()
        return body if body["completedItemCount"] == len(records) else None

    results = (await wait_until(complete, timeout=60, what="the batch"))["batchExecutionResults"]
    expected = model.predict(X_TEST[:4]).tolist()
    for i in range(4):
        assert results[i]["success"] is True
        assert results[i]["outputParameters"]["outputData"]["variable"] == pytest.approx([expected[i]], rel=1e-5)
    assert results[4]["success"] is False and "3 feature column(s)" in results[4]["errorMessage"]


async def test_batch_waits_only_for_as_many_requests_as_the_last_call() -> None:
    """The batching worker itself, on a real ONNX model (no servers): what one model call holds."""
    model, onx = linear(1.5)
    onnx_model = OnnxModel.load(onx, 1)
    feeds = [onnx_model.prepare(input_data(X_TEST[i : i + 1])["inputData"]) for i in range(4)]
    expected = model.predict(X_TEST[:4]).tolist()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        entry = OnnxEntry(onnx_model, executor, max_rows=64, max_wait=5.0)
        # Four requests queued together: one call. A lone request is never held back.
        first = await asyncio.gather(*(entry.score(*feed) for feed in feeds))
        assert (entry.requests, entry.calls, entry.batched_requests) == (4, 1, 4)
        assert [f["variable"][0] for f in first] == pytest.approx(expected, rel=1e-5)

        # After a call of four, the worker waits (up to max_wait) for four again: stragglers join.
        async def later(feed: tuple[dict[str, np.ndarray], int]) -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return await entry.score(*feed)

        second = await asyncio.gather(entry.score(*feeds[0]), *(later(feed) for feed in feeds[1:]))
        assert (entry.requests, entry.calls) == (8, 2)
        assert [s["variable"][0] for s in second] == pytest.approx(expected, rel=1e-5)
        # Without a wait, the same arrivals take two calls.
        entry.max_wait = 0.0
        await asyncio.gather(entry.score(*feeds[0]), *(later(feed) for feed in feeds[1:]))
        assert entry.calls == 4


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that counts the calls handed to it."""

    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(*args, **kwargs)


async def test_a_fast_model_runs_inline_and_slow_or_large_calls_on_a_thread() -> None:
    """A call shorter than a thread hop runs on the event loop; the rest go to the executor."""
    model, onx = linear(2.5)
    onnx_model = OnnxModel.load(onx, 1)
    feed = onnx_model.prepare(input_data(X_TEST[:1])["inputData"])
    expected = model.predict(X_TEST[:1]).tolist()
    with _CountingExecutor(1) as executor:
        entry = OnnxEntry(onnx_model, executor, max_rows=64, max_wait=0.0)
        for _ in range(200):  # the first calls, timed on the thread, teach the entry the model's speed
            result = await entry.score(*feed)
        assert executor.submitted >= 1
        assert entry.recent_run is not None and entry.recent_run < INLINE_RUN_SECONDS
        before = executor.submitted
        for _ in range(20):
            result = await entry.score(*feed)
            assert result["variable"][0] == pytest.approx(expected[0], rel=1e-5)
        assert executor.submitted == before  # all inline
        rows = np.repeat(X_TEST[:1], INLINE_ROWS + 1, axis=0)
        large = await entry.score(*onnx_model.prepare(input_data(rows)["inputData"]))
        assert executor.submitted == before + 1  # a large batch goes to the thread however fast the model
        assert large["variable"] == pytest.approx(expected * (INLINE_ROWS + 1), rel=1e-5)
        entry.recent_run = 1.0  # as a slow model's calls would have taught it
        await entry.score(*feed)
        assert executor.submitted == before + 2


async def test_model_is_loaded_ahead_at_publish(server: WebNode, http: aiohttp.ClientSession) -> None:
    _, onx = linear(7.25 if server.mode == "onebox" else -7.25)  # bytes no other test publishes
    digest = hashlib.sha256(onx).hexdigest()
    target = server.compute_uris[0].removeprefix("http://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rpb_grpc.RealtimeStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):  # not there before the publish
            await stub.GetModelFigures(rpb.ModelFiguresRequest(model_hash=digest))
        assert (await publish(http, server, f"/realtime-services/{unique('ahead')}/1.0", onx))[0] == 201
        figures = await stub.GetModelFigures(rpb.ModelFiguresRequest(model_hash=digest))
    assert figures.requests == 0  # loaded, with its session built, before any request
