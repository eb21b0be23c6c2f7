"""`make bench`: o16n against a floor measured in the same run; writes docs/benchmarks.md.

Starts the floor (a bare aiohttp handler doing x + y), a one-box o16n (web node + compute node
as separate processes), and, when installed in the bench-only environment .venv-bench, MLflow's
scoring server and Jupyter Kernel Gateway serving the same x + y (tests/bench/competitors.py);
runs closed-loop load with wrk at concurrency 1, 8 and 64, alternating targets round by round,
and prints one markdown table (req/s, p50, p99, ratio to the floor), o16n's ratios to MLflow and
Kernel Gateway, and issue #9's targets as met or not. Loopback only; about 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from computenode.settings import ComputeNodeSettings
from tests.bench import competitors, cpu, load
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
FLOOR = "floor: bare aiohttp x+y"
PYTHON = "Python standard service"
R = "R standard service"
REALTIME = "realtime ONNX service"
MLFLOW = "MLflow scoring server (pyfunc, 1 worker)"
KG = "Jupyter Kernel Gateway (notebook-http)"
COMPETITORS = {"MLflow scoring server": MLFLOW, "Jupyter Kernel Gateway": KG}
# Sections of docs/benchmarks.md written by other commands (appended by hand), kept when the file is rewritten.
KEPT_SECTIONS = ("## Memory growth", "## gRPC round trip")


@dataclass
class Target:
    name: str
    base: str
    paths: list[str]
    body: str
    token: str | None
    concurrency: tuple[int, ...] = CONCURRENCY
    results: dict[int, list[load.Result]] = field(default_factory=dict)
    # Processes whose CPU time is measured during each run, by role (empty: not measured).
    roles: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    cpu: dict[int, list[dict[str, float]]] = field(default_factory=dict)  # µs per request by role


def shipped_pool_sizes() -> dict[str, str]:
    """The generic pools' sizes as a compute node ships (its settings' defaults), as O16N_ settings."""
    names = ("python_pool_initial_size", "python_pool_max_size", "r_pool_initial_size", "r_pool_max_size")
    defaults = {f.name: f.default for f in dataclasses.fields(ComputeNodeSettings)}
    return {f"O16N_{name.upper()}": str(defaults[name]) for name in names}


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
    """Create (timed) and delete, `n` times, each time once the pool has a warm shell again."""
    headers = {"Authorization": f"Bearer {token}"}
    idle_key = f"{'python' if runtime == 'Python' else 'r'}IdleShellCount"

    async def warm() -> bool:
        async with http.get(f"{url}/status", headers=headers) as resp:
            nodes = (await resp.json())["components"]["backends"]["components"].values()
        return all(int(node["details"].get(idle_key, 0)) >= 1 for node in nodes)

    times = []
    for _ in range(n):
        await wait_until(warm, timeout=60, what=f"a warm {runtime} shell")
        start = time.perf_counter()
        async with http.post(f"{url}/sessions", json={"runtimeType": runtime}, headers=headers) as resp:
            if resp.status != 201:
                return []
            sid = (await resp.json())["sessionId"]
        times.append((time.perf_counter() - start) * 1000)
        async with http.delete(f"{url}/sessions/{sid}", headers=headers):
            pass
    return times


async def start_field(
    http: aiohttp.ClientSession,
    work: Path,
    targets: list[Target],
    servers: list[competitors.Server],
    missing: list[str],
    notes: list[str],
) -> None:
    """MLflow's scoring server and Kernel Gateway as targets, or as "not installed" rows with a note."""
    for kind, start in competitors.STARTERS.items():
        try:
            server = await start(http, work / kind.split()[0].lower())
        except competitors.Unavailable as exc:
            missing.append(COMPETITORS[kind])
            notes.append(f"{kind}: {exc}")
            continue
        servers.append(server)
        targets.append(Target(COMPETITORS[kind], server.base, [server.path], server.body, None))


def run_rounds(targets: list[Target], rounds: int, seconds: float) -> None:
    """For each concurrency: warm every target up at it, then run its rounds, targets alternating
    within a round. (Pools grow to the load and shrink when idle: without a warm-up at each
    concurrency, the first round would also time the shells starting in the background.)"""
    for concurrency in CONCURRENCY:
        for target in targets:
            if concurrency in target.concurrency:
                load.run(target.base, target.paths, target.body, token=target.token, concurrency=concurrency, seconds=1)
        for _ in range(rounds):
            for target in targets:
                if concurrency not in target.concurrency:
                    continue
                with cpu.measure(target.roles) as usage:
                    result = load.run(
                        target.base,
                        target.paths,
                        target.body,
                        token=target.token,
                        concurrency=concurrency,
                        seconds=seconds,
                    )
                target.results.setdefault(concurrency, []).append(result)
                if target.roles:
                    target.cpu.setdefault(concurrency, []).append(usage.per_request_us(result.requests))
                print(
                    f"  c={concurrency:<3} {target.name:<32} {result.rps:9.0f} req/s "
                    f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms errors {result.errors}",
                    file=sys.stderr,
                    flush=True,
                )


async def main(seconds: float, rounds: int, out: Path, note: str) -> None:
    if not load.available():
        sys.exit("wrk is not installed: `apt-get install wrk` (make bench does this)")
    work = Path(tempfile.mkdtemp(prefix="o16n-bench-"))
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, "-m", "tests.bench.floor", str(floor_port)], cwd=ROOT)  # noqa: ASYNC220
    # The shipped pool sizes (the settings' defaults): what a deployment gets without tuning
    # (tests.support sizes the pools down for the tests, so they are passed explicitly).
    compute, uri = await start_compute_node(work / "compute", **shipped_pool_sizes())
    web = await start_web_node(work / "web", [uri], O16N_BCRYPT_ROUNDS="12")
    targets: list[Target] = []
    notes: list[str] = []
    servers: list[competitors.Server] = []
    missing: list[str] = []
    load_before = os.getloadavg()
    try:
        async with aiohttp.ClientSession() as http:

            async def floor_up() -> bool:
                async with http.post(f"http://127.0.0.1:{floor_port}/add", data=ADD_BODY) as resp:
                    return resp.status == 200

            await wait_until(floor_up, timeout=30, what="floor")
            token = await login(http, web.url)
            idle = {"web node": rss_mb(web.process.popen.pid), "compute node": rss_mb(compute.popen.pid)}
            stack = {
                "web node": lambda: [web.process.popen.pid],
                "compute node": lambda: [compute.popen.pid],
                "shells": lambda: children(compute.popen.pid),
            }
            targets.append(
                Target(
                    FLOOR,
                    f"http://127.0.0.1:{floor_port}",
                    ["/add"],
                    ADD_BODY,
                    None,
                    roles={"floor": lambda: [floor.pid]},
                )
            )
            if await publish(http, web.url, token, "addpy", "Python", "result = x + y"):
                targets.append(Target(PYTHON, web.url, ["/api/addpy/1.0"], ADD_BODY, token, roles=stack))
            if await publish(http, web.url, token, "addr", "R", "result <- x + y"):
                targets.append(Target(R, web.url, ["/api/addr/1.0"], ADD_BODY, token, roles=stack))
            else:
                notes.append("R standard service: not measured (R unavailable on this compute node)")
            realtime_body = await publish_realtime(http, web.url, token)
            if realtime_body:
                targets.append(Target(REALTIME, web.url, ["/api/clf/1.0"], realtime_body, token, roles=stack))
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
                    name = f"session execute ({runtime})"
                    targets.append(Target(name, web.url, paths, body, token, (1,), roles=stack))
                else:
                    notes.append(f"session execute ({runtime}): not measured (sessions unavailable)")
            await start_field(http, work, targets, servers, missing, notes)
            login_body = json.dumps({"username": "admin", "password": ADMIN_PASSWORD})
            targets.append(Target("login (bcrypt, 12 rounds)", web.url, ["/login"], login_body, None, (1, 8)))

            run_rounds(targets, rounds, seconds)
            creates = {rt: await session_create_times(http, web.url, token, rt, 20) for rt in ("Python", "R")}
            shells = {pid: rss_mb(pid) for pid in children(compute.popen.pid)}
    finally:
        for server in servers:
            server.stop()
        web.process.stop()
        compute.stop()
        floor.terminate()
        floor.wait(10)
    versions = [f"{s.name} {s.version}" for s in servers]
    header = Header(seconds, rounds, note, versions, missing, (load_before[0], os.getloadavg()[0]))
    write_report(out, header, targets, creates, idle, shells, notes)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Header:
    seconds: float
    rounds: int
    note: str
    versions: list[str]
    missing: list[str]
    load: tuple[float, float]


@dataclass(frozen=True)
class Goal:
    what: str
    target: str | None
    concurrency: int
    measure: str  # "floor": ratio to the floor; "p50": p50 ms; a target name: ratio to that target
    bound: float
    at_most: bool = False


GOALS = (
    Goal("Python standard service ≥ 0.25 x floor req/s at c=8", PYTHON, 8, "floor", 0.25),
    Goal("Python standard service p50 ≤ 1 ms at c=1", PYTHON, 1, "p50", 1.0, at_most=True),
    Goal("Python standard service ≥ 3 x MLflow req/s at c=8", PYTHON, 8, MLFLOW, 3.0),
    Goal("Python standard service ≥ 30 x Kernel Gateway req/s at c=8", PYTHON, 8, KG, 30.0),
    Goal("R standard service ≥ 0.20 x floor req/s at c=8", R, 8, "floor", 0.20),
    Goal("realtime ONNX service ≥ 0.30 x floor req/s at c=8", REALTIME, 8, "floor", 0.30),
    Goal("session execute (Python) p50 ≤ 1.5 ms", "session execute (Python)", 1, "p50", 1.5, at_most=True),
    Goal("session execute (R) p50 ≤ 2 ms", "session execute (R)", 1, "p50", 2.0, at_most=True),
    Goal("session create (Python) p50 ≤ 20 ms", None, 0, "Python", 20.0, at_most=True),
    Goal("session create (R) p50 ≤ 20 ms", None, 0, "R", 20.0, at_most=True),
)


def _rps(by_name: dict[str, Target], name: str, concurrency: int) -> float | None:
    target = by_name.get(name)
    if target is None or concurrency not in target.results:
        return None
    return _median([r.rps for r in target.results[concurrency]])


def _measured(goal: Goal, by_name: dict[str, Target], creates: dict[str, list[float]]) -> float | None:
    if goal.target is None:  # session create, from the sequential create + delete timings
        times = creates.get(goal.measure)
        return statistics.median(times) if times else None
    if goal.measure == "p50":
        target = by_name.get(goal.target)
        if target is None or goal.concurrency not in target.results:
            return None
        return _median([r.p50_ms for r in target.results[goal.concurrency]])
    ours = _rps(by_name, goal.target, goal.concurrency)
    theirs = _rps(by_name, FLOOR if goal.measure == "floor" else goal.measure, goal.concurrency)
    return ours / theirs if ours is not None and theirs else None


def targets_section(targets: list[Target], creates: dict[str, list[float]]) -> list[str]:
    by_name = {t.name: t for t in targets}
    lines = [
        "## Targets (issue #9, from this run's figures)",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    for goal in GOALS:
        value = _measured(goal, by_name, creates)
        if value is None:
            lines.append(f"| {goal.what} | not measured | - |")
            continue
        shown = f"{value:.2f} ms" if goal.at_most else f"{value:.2f} x"
        met = value <= goal.bound if goal.at_most else value >= goal.bound
        lines.append(f"| {goal.what} | {shown} | {'met' if met else 'not met'} |")
    return lines


def field_section(targets: list[Target]) -> list[str]:
    by_name = {t.name: t for t in targets}
    lines = [
        "## o16n against MLflow and Kernel Gateway (req/s ratio, same run)",
        "",
        "| o16n target | concurrency | ratio to MLflow | ratio to Kernel Gateway |",
        "|---|---:|---:|---:|",
    ]
    for name in (PYTHON, R, REALTIME):
        for c in CONCURRENCY:
            ours = _rps(by_name, name, c)
            if ours is None:
                continue
            cells = []
            for other in (MLFLOW, KG):
                theirs = _rps(by_name, other, c)
                cells.append(f"{ours / theirs:.1f}" if theirs else "not measured")
            lines.append(f"| {name} | {c} | {cells[0]} | {cells[1]} |")
    return lines


def cpu_section(targets: list[Target]) -> list[str]:
    """Where a request's CPU goes: each process's CPU time during the runs, per request served."""
    lines = [
        "## CPU time per request, by process (µs, median over rounds)",
        "",
        "What bounds the ratios on this machine: the load generator and every process of the stack share its "
        "cores, so req/s can reach at most the cores left by wrk divided by the sum of a row. Where req/s times "
        "the row's total stays well under those cores, the round trip of the concurrent requests bounds it "
        "instead (o16n's compute node holds a reply up to O16N_REPLY_BATCH_HOLD_MS so that replies travel "
        "together: less CPU per request, a longer round trip).",
        "",
        "| target | concurrency | floor | web node | compute node | shells | total |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    roles = ("floor", "web node", "compute node", "shells")
    for target in targets:
        for c, runs in sorted(target.cpu.items()):
            cells = {role: _median([run[role] for run in runs if role in run]) for role in roles}
            shown = [f"{cells[role]:.0f}" if any(role in run for run in runs) else "-" for role in roles]
            lines.append(f"| {target.name} | {c} | {' | '.join(shown)} | {sum(cells.values()):.0f} |")
    return lines


def kept_sections(out: Path) -> list[str]:
    """Sections other commands put in the file (KEPT_SECTIONS), from their heading to the end of the file."""
    try:
        text = out.read_text()
    except OSError:
        return []
    starts = [text.find(f"\n{heading}") for heading in KEPT_SECTIONS]
    found = [i for i in starts if i >= 0]
    return ["", text[min(found) + 1 :].rstrip("\n")] if found else []


def write_report(
    out: Path,
    header: Header,
    targets: list[Target],
    creates: dict[str, list[float]],
    idle: dict[str, float],
    shells: dict[int, float],
    notes: list[str],
) -> None:
    floor = targets[0]
    floor_rps = {c: _median([r.rps for r in rs]) for c, rs in floor.results.items()}
    field = ", ".join(header.versions) if header.versions else "none installed"
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"all on loopback; wrk (1 thread) closed loop, {header.rounds} rounds of {header.seconds:g} s per target "
        "and concurrency after 1 s of warm-up at that concurrency, targets alternating; figures are medians "
        "over rounds. Ratios are to the floor "
        "(a bare aiohttp handler doing the same x + y) measured in the same run. "
        f"Load average (1 min) {header.load[0]:.1f} before the run, {header.load[1]:.1f} after.",
        "",
        f"The field, from the bench-only virtualenv .venv-bench: {field}. MLflow serves a pyfunc model "
        "(predict returns x + y) with `mlflow models serve --env-manager local`, which runs uvicorn with the "
        "CLI's default of 1 worker; Kernel Gateway serves a notebook whose `# POST /add` cell prints x + y, with "
        "its default of one kernel.",
    ]
    if header.note:
        lines += ["", header.note]
    lines += [
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
    for name in header.missing:
        lines.append(f"| {name} | - | not installed | - | - | - | - |")
    lines += ["", *targets_section(targets, creates), "", *field_section(targets), "", *cpu_section(targets)]
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
    lines += kept_sections(out)
    lines.append("")
    text = "\n".join(lines)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--note", default="", help="a sentence for the header, e.g. that the machine was shared")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds, args.out, args.note))
