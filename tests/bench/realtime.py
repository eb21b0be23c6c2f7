"""`make bench-realtime`: a small classifier scored through the whole stack, beside its floor.

Trains a logistic regression on iris (shipped with scikit-learn), converts it with skl2onnx,
and measures with wrk at concurrency 1, 8 and 64, one row per request:

- floor: the same ONNX model scored by onnxruntime in a bare aiohttp handler (same run);
- realtime: POST /api/{name}/{version} of a realtime service (web node -> Call stream ->
  onnxruntime in the compute node), with batching of concurrent requests (the default);
- realtime, batching off: the same on a second compute node with O16N_REALTIME_BATCH_MAX_SIZE=1;
- standard Python service: the same model (pickled, scikit-learn) in a Python shell.

Prints a markdown table (medians over rounds of req/s, p50, p99). Loopback only; about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.bench import load
from tests.support import ROOT, WebNode, free_port, start_compute_node, start_web_node, wait_until

CONCURRENCY = (1, 8, 64)
BODY = '{"inputData":{"sepal_length":[5.9],"sepal_width":[3.0],"petal_length":[5.1],"petal_width":[1.8]}}'
STANDARD_INIT = """
import pickle
with open(MODEL_PATH, "rb") as f:
    model = pickle.load(f)
"""
STANDARD_CODE = """
import pandas as pd
X = inputData.to_numpy(dtype="float32")
proba = model.predict_proba(X)
columns = {"output_label": model.predict(X)}
for j, c in enumerate(model.classes_):
    columns[f"output_probability_{c}"] = proba[:, j]
outputData = pd.DataFrame(columns)
"""


@dataclass
class Target:
    name: str
    base: str
    path: str
    token: str | None = None

    @property
    def url(self) -> str:
        return self.base + self.path


async def publish_realtime(http: aiohttp.ClientSession, web: WebNode, name: str, model: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("model", model, filename="iris.onnx")
    async with http.post(f"{web.url}/realtime-services/{name}/1.0", data=form, headers=await web.headers(http)) as r:
        assert r.status == 201, await r.text()
    return f"/api/{name}/1.0"


async def publish_standard(http: aiohttp.ClientSession, web: WebNode, name: str, pickle_path: Path) -> str:
    definition = {
        "runtimeType": "Python",
        "initCode": f"MODEL_PATH = {str(pickle_path)!r}\n{STANDARD_INIT}",
        "code": STANDARD_CODE,
        "inputParameterDefinitions": [{"name": "inputData", "type": "data.frame"}],
        "outputParameterDefinitions": [{"name": "outputData", "type": "data.frame"}],
    }
    async with http.post(f"{web.url}/services/{name}/1.0", json=definition, headers=await web.headers(http)) as r:
        assert r.status == 201, await r.text()
    return f"/api/{name}/1.0"


async def check(http: aiohttp.ClientSession, target: Target) -> None:
    headers = {"Content-Type": "application/json"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"

    async def ok() -> bool:
        async with http.post(target.url, data=BODY, headers=headers) as r:
            body = await r.json()
            return r.status == 200 and body["success"] is True

    await wait_until(ok, timeout=60, what=target.name)


def median(results: list[load.Result]) -> load.Result:
    """The median of each figure over the rounds."""
    return load.Result(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
    )


def table(results: dict[str, dict[int, load.Result]], seconds: float, rounds: int) -> str:
    lines = [
        f"Loopback, wrk -t1, median of {rounds} rounds of {seconds:g} s per cell, one row per request.",
        "",
        "| target | " + " | ".join(f"c={c} req/s | p50 ms | p99 ms" for c in CONCURRENCY) + " |",
        "|---|" + "---|---|---|" * len(CONCURRENCY),
    ]
    for name, cells in results.items():
        row = [
            f"{cells[c].rps:,.0f} | {cells[c].p50_ms:.2f} | {cells[c].p99_ms:.2f}"
            + (" (errors)" if cells[c].errors else "")
            for c in CONCURRENCY
        ]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


async def main(seconds: float, rounds: int) -> None:
    iris = load_iris()
    X, y = iris.data.astype(np.float32), iris.target
    model = LogisticRegression(max_iter=1000).fit(X, y)
    onnx_bytes = convert_sklearn(
        model, initial_types=[("X", FloatTensorType([None, 4]))], options={id(model): {"zipmap": False}}
    ).SerializeToString()
    work = Path(tempfile.mkdtemp(prefix="o16n-bench-rt-"))
    (work / "iris.onnx").write_bytes(onnx_bytes)
    pickle_path = work / "iris.pkl"
    pickle_path.write_bytes(pickle.dumps(model))

    floor_port = free_port()
    floor = subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
        [sys.executable, "-m", "tests.bench.realtime_floor", str(floor_port), str(work / "iris.onnx")], cwd=ROOT
    )
    env = {"O16N_PYTHON_POOL_INITIAL_SIZE": "2", "O16N_PYTHON_POOL_MAX_SIZE": "2", "O16N_R_ENABLED": "false"}
    compute, uri = await start_compute_node(work / "compute", **env)
    plain, plain_uri = await start_compute_node(work / "compute-nobatch", **env, O16N_REALTIME_BATCH_MAX_SIZE="1")
    web = await start_web_node(work / "web", [uri], O16N_LOG_LEVEL="WARNING")
    web2 = await start_web_node(work / "web-nobatch", [plain_uri], O16N_LOG_LEVEL="WARNING")
    try:
        async with aiohttp.ClientSession() as http:
            targets = [
                Target("floor: onnxruntime in a bare aiohttp handler", f"http://127.0.0.1:{floor_port}", "/score"),
                Target(
                    "o16n realtime (ONNX, batching on)",
                    web.url,
                    await publish_realtime(http, web, "iris", onnx_bytes),
                    await web.token(http),
                ),
                Target(
                    "o16n realtime (ONNX, batching off)",
                    web2.url,
                    await publish_realtime(http, web2, "iris", onnx_bytes),
                    await web2.token(http),
                ),
                Target(
                    "o16n standard Python service (same model, scikit-learn)",
                    web.url,
                    await publish_standard(http, web, "irispy", pickle_path),
                    await web.token(http),
                ),
            ]
            for target in targets:
                await check(http, target)
        runs: dict[str, dict[int, list[load.Result]]] = {t.name: {c: [] for c in CONCURRENCY} for t in targets}
        for _ in range(rounds):  # targets alternate within each round, so noise hits them alike
            for concurrency in CONCURRENCY:
                for target in targets:
                    result = await asyncio.to_thread(
                        load.run,
                        target.base,
                        [target.path],
                        BODY,
                        token=target.token,
                        concurrency=concurrency,
                        seconds=seconds,
                    )
                    runs[target.name][concurrency].append(result)
        results = {name: {c: median(cells[c]) for c in CONCURRENCY} for name, cells in runs.items()}
        print(table(results, seconds, rounds))
    finally:
        for node in (web, web2):
            node.process.stop()
        compute.stop()
        plain.stop()
        floor.terminate()
        floor.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of load per cell")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the table shows medians)")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
