"""`make bench`: o16n against a floor measured in the same run; writes docs/benchmarks.md.

Starts the floor (a bare aiohttp handler doing x + y), a one-box o16n (web node + compute node
as separate processes), and MLflow's scoring server when installed in a bench-only environment
(.venv-bench); runs closed-loop load with wrk at concurrency 1, 8 and 64, alternating targets
round by round, and prints one markdown table (req/s, p50, p99, ratio to the floor).
Loopback only; bounded in time (about 5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.bench import load
from tests.support import (
    ADMIN_PASSWORD,
    ROOT,
    free_port,
    login,
    start_compute_node,
    start_web_node,
    wait_until,
)

ADD_BODY = '{"x":1,"y":2}'
CONCURRENCY = (1, 8, 64)


@dataclass
class Target:
    name: str
    base: str
    paths: list[str]
    body: str
    token: str | None
    concurrency: tuple[int, ...] = CONCURRENCY
    results: dict[int, list[load.Result]] = field(default_factory=dict)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


async def publish(http: aiohttp.ClientSession, url: str, token: str, name: str, runtime: str, code: str) -> bool:
    definition = {
        "code": code,
        "runtimeType": runtime,
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{url}/services/{name}/1.0", json=definition, headers=headers) as resp:
        if resp.status != 201:
            print(f"  {name}: publish failed {resp.status} {await resp.text()}", file=sys.stderr)
            return False
    async with http.post(
        f"{url}/api/{name}/1.0", data=ADD_BODY, headers={**headers, "Content-Type": "application/json"}
    ) as resp:
        body = await resp.json()
        ok = resp.status == 200 and body.get("success") is True
        if not ok:
            print(f"  {name}: consume failed {resp.status} {body}", file=sys.stderr)
        return ok


async def publish_realtime(http: aiohttp.ClientSession, url: str, token: str) -> str | None:
    """Train a small classifier, convert it to ONNX and publish it; None when unsupported here."""
    try:
        import numpy as np
        from skl2onnx import to_onnx
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = to_onnx(LogisticRegression().fit(x, y), x[:1], options={"zipmap": False})
    form = aiohttp.FormData()
    form.add_field("model", model.SerializeToString(), filename="model.onnx")
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{url}/realtime-services/clf/1.0", data=form, headers=headers) as resp:
        if resp.status != 201:
            print(f"  realtime: publish answered {resp.status}", file=sys.stderr)
            return None
    return '{"inputData":{"f0":[0.5],"f1":[-0.25]}}'


async def create_sessions(http: aiohttp.ClientSession, url: str, token: str, runtime: str, n: int) -> list[str]:
    ids = []
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(n):
        async with http.post(f"{url}/sessions", json={"runtimeType": runtime}, headers=headers) as resp:
            if resp.status != 201:
                print(f"  sessions ({runtime}): create answered {resp.status}", file=sys.stderr)
                return []
            ids.append((await resp.json())["sessionId"])
    return ids


async def session_create_times(http: aiohttp.ClientSession, url: str, token: str, runtime: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        async with http.post(f"{url}/sessions", json={"runtimeType": runtime}, headers=headers) as resp:
            if resp.status != 201:
                return []
            sid = (await resp.json())["sessionId"]
        times.append((time.perf_counter() - start) * 1000)
        async with http.delete(f"{url}/sessions/{sid}", headers=headers):
            pass
    return times


async def main(seconds: float, rounds: int, out: Path) -> None:
    if not load.available():
        sys.exit("wrk is not installed: `apt-get install wrk` (make bench does this)")
    work = Path(tempfile.mkdtemp(prefix="o16n-bench-"))
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, "-m", "tests.bench.floor", str(floor_port)], cwd=ROOT)  # noqa: ASYNC220
    compute, uri = await start_compute_node(
        work / "compute",
        # Two shells per runtime for services, one more for the measured session.
        O16N_PYTHON_POOL_INITIAL_SIZE="3",
        O16N_PYTHON_POOL_MAX_SIZE="3",
        O16N_R_POOL_INITIAL_SIZE="3",
        O16N_R_POOL_MAX_SIZE="3",
    )
    web = await start_web_node(work / "web", [uri], O16N_BCRYPT_ROUNDS="12")
    targets: list[Target] = []
    notes: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def floor_up() -> bool:
                async with http.post(f"http://127.0.0.1:{floor_port}/add", data=ADD_BODY) as resp:
                    return resp.status == 200

            await wait_until(floor_up, timeout=30, what="floor")
            token = await login(http, web.url)
            idle = {"web node": rss_mb(web.process.popen.pid), "compute node": rss_mb(compute.popen.pid)}
            targets.append(
                Target("floor: bare aiohttp x+y", f"http://127.0.0.1:{floor_port}", ["/add"], ADD_BODY, None)
            )
            if await publish(http, web.url, token, "addpy", "Python", "result = x + y"):
                targets.append(Target("Python standard service", web.url, ["/api/addpy/1.0"], ADD_BODY, token))
            if await publish(http, web.url, token, "addr", "R", "result <- x + y"):
                targets.append(Target("R standard service", web.url, ["/api/addr/1.0"], ADD_BODY, token))
            else:
                notes.append("R standard service: not measured (R unavailable on this compute node)")
            realtime_body = await publish_realtime(http, web.url, token)
            if realtime_body:
                targets.append(Target("realtime ONNX service", web.url, ["/api/clf/1.0"], realtime_body, token))
            else:
                notes.append("realtime ONNX service: not measured (realtime publishing unavailable)")
            for runtime, code in (("Python", "result = x + y"), ("R", "result <- x + y")):
                # A session holds its shell for its whole life and runs one execution at a time.
                sessions = await create_sessions(http, web.url, token, runtime, 1)
                if sessions:
                    body = json.dumps(
                        {
                            "code": code,
                            "inputParameters": [{"name": "x", "value": 1}, {"name": "y", "value": 2}],
                            "outputParameters": ["result"],
                        }
                    )
                    paths = [f"/sessions/{s}/execute" for s in sessions]
                    targets.append(Target(f"session execute ({runtime})", web.url, paths, body, token, (1,)))
                else:
                    notes.append(f"session execute ({runtime}): not measured (sessions unavailable)")
            login_body = json.dumps({"username": "admin", "password": ADMIN_PASSWORD})
            targets.append(Target("login (bcrypt, 12 rounds)", web.url, ["/login"], login_body, None, (1, 8)))

            for target in targets:  # warm up
                load.run(target.base, target.paths, target.body, token=target.token, concurrency=8, seconds=1)
            for concurrency in CONCURRENCY:
                for _ in range(rounds):
                    for target in targets:
                        if concurrency not in target.concurrency:
                            continue
                        result = load.run(
                            target.base,
                            target.paths,
                            target.body,
                            token=target.token,
                            concurrency=concurrency,
                            seconds=seconds,
                        )
                        target.results.setdefault(concurrency, []).append(result)
                        print(
                            f"  c={concurrency:<3} {target.name:<32} {result.rps:9.0f} req/s "
                            f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms errors {result.errors}",
                            file=sys.stderr,
                            flush=True,
                        )
            creates = {rt: await session_create_times(http, web.url, token, rt, 20) for rt in ("Python", "R")}
            shells = {pid: rss_mb(pid) for pid in children(compute.popen.pid)}
    finally:
        web.process.stop()
        compute.stop()
        floor.terminate()
        floor.wait(10)
    write_report(out, targets, creates, idle, shells, notes, seconds, rounds)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def write_report(
    out: Path,
    targets: list[Target],
    creates: dict[str, list[float]],
    idle: dict[str, float],
    shells: dict[int, float],
    notes: list[str],
    seconds: float,
    rounds: int,
) -> None:
    floor = targets[0]
    floor_rps = {c: _median([r.rps for r in rs]) for c, rs in floor.results.items()}
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"all on loopback; wrk (1 thread) closed loop, {rounds} rounds of {seconds:g} s per target and "
        "concurrency, targets alternating; figures are medians over rounds. Ratios are to the floor "
        "(a bare aiohttp handler doing the same x + y) measured in the same run.",
        "",
        "| target | concurrency | req/s | p50 ms | p99 ms | errors | ratio to floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        for c, results in sorted(target.results.items()):
            rps = _median([r.rps for r in results])
            ratio = rps / floor_rps[c] if floor_rps.get(c) else 0.0
            lines.append(
                f"| {target.name} | {c} | {rps:,.0f} | {_median([r.p50_ms for r in results]):.2f} | "
                f"{_median([r.p99_ms for r in results]):.2f} | {sum(r.errors for r in results)} | {ratio:.2f} |"
            )
    lines += ["", "## Session create (from a warm pool, sequential, create + delete)", ""]
    for runtime, times in creates.items():
        if times:
            lines.append(
                f"- {runtime}: p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms over {len(times)}"
            )
        else:
            lines.append(f"- {runtime}: not measured (sessions unavailable)")
    lines += ["", "## Memory (RSS)", ""]
    for name, mb in idle.items():
        lines.append(f"- idle {name}: {mb:.0f} MB")
    for pid, mb in sorted(shells.items()):
        lines.append(f"- shell pid {pid}: {mb:.0f} MB")
    if notes:
        lines += ["", "## Not measured", ""] + [f"- {n}" for n in notes]
    lines.append("")
    text = "\n".join(lines)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds, args.out))
