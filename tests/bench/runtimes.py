"""R vs Python runtime figures, side by side in one run: `python -m tests.bench.runtimes`.

Starts a one-box o16n (compute node + web node as separate processes) and measures through
the HTTP API, sequentially (one request in flight):
- per-call latency of a warm `x + y` service in each runtime (p50/p99 of --calls calls);
- a 10,000-row data.frame round trip (4 columns: double with NA, integer, string, logical);
- the same x + y sent straight to a warm shell (the shell's own cost, without HTTP and gRPC),
  and the CPU time the shell process spent per call (robust to other load on the machine);
- shell cold start (spawn to first answer) of each runtime, on a bare ShellProcess.
Calls alternate between the runtimes, so a busy machine slows both alike.
Prints a markdown table. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from computenode.shells.process import PYTHON, R, ShellProcess, ShellSpec
from tests.support import login, start_compute_node, start_web_node, unique

ROWS = 10_000
RUNTIMES = ("Python", "R")
SPECS = {"Python": PYTHON, "R": R}
ADD = {"R": "result <- x + y", "Python": "result = x + y"}
ECHO = {"R": "out <- d", "Python": "out = d"}


def frame(rows: int) -> dict[str, list[Any]]:
    return {
        "x": [i * 0.5 if i % 10 else None for i in range(rows)],
        "k": list(range(rows)),
        "s": [f"row-{i}" for i in range(rows)],
        "b": [i % 2 == 0 for i in range(rows)],
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def publish(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]) -> str:
    name = unique("bench")
    async with http.post(f"{url}/services/{name}/1.0", json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    return f"{url}/api/{name}/1.0"


async def timed_calls(
    http: aiohttp.ClientSession, endpoint: str, headers: dict[str, str], body: bytes, n: int
) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        async with http.post(endpoint, data=body, headers=headers) as resp:
            result = orjson.loads(await resp.read())
        samples.append(time.perf_counter() - began)
        assert resp.status == 200 and result["success"], result
    return samples


async def alternating(
    http: aiohttp.ClientSession, endpoints: dict[str, str], headers: dict[str, str], body: bytes, n: int, warmup: int
) -> dict[str, list[float]]:
    for runtime in RUNTIMES:  # the shells load the service and warm up
        await timed_calls(http, endpoints[runtime], headers, body, warmup)
    samples: dict[str, list[float]] = {runtime: [] for runtime in RUNTIMES}
    for _ in range(n):
        for runtime in RUNTIMES:
            samples[runtime] += await timed_calls(http, endpoints[runtime], headers, body, 1)
    return samples


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used (Linux /proc), robust to other load on the machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def shell_calls(root: Path, n: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """x + y sent straight to a warm shell of each runtime (the shell's own cost, no HTTP or gRPC).

    Returns the latencies and each shell's CPU seconds per call.
    """
    shells = {runtime: ShellProcess(SPECS[runtime], root) for runtime in RUNTIMES}
    samples: dict[str, list[float]] = {runtime: [] for runtime in RUNTIMES}
    cpu: dict[str, float] = {}
    try:
        for runtime, shell in shells.items():
            await shell.start(120)
            service = {
                "key": "add",
                "code": ADD[runtime],
                "init_code": "",
                "inputs": [["x", "numeric"], ["y", "numeric"]],
                "outputs": [["result", "numeric"]],
                "output_files": [],
            }
            reply, _ = await shell.request({"op": "load", "service": service}, timeout=60)
            assert reply["ok"], reply
        for i in range(n + 20):
            if i == 20:  # after warming up
                cpu = {runtime: cpu_seconds(shell.pid) for runtime, shell in shells.items()}
            for runtime, shell in shells.items():
                began = time.perf_counter()
                reply, _ = await shell.request({"op": "execute", "key": "add"}, b'{"x":1,"y":2}', timeout=60)
                if i >= 20:  # after warming up
                    samples[runtime].append(time.perf_counter() - began)
                assert reply["success"], reply
        cpu = {runtime: (cpu_seconds(shell.pid) - cpu[runtime]) / n for runtime, shell in shells.items()}
    finally:
        for shell in shells.values():
            await shell.terminate()
            shell.cleanup()
    return samples, cpu


async def cold_start(spec: ShellSpec, root: Path, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        shell = ShellProcess(spec, root)
        began = time.perf_counter()
        await shell.start(120)
        samples.append(time.perf_counter() - began)
        await shell.terminate()
        shell.cleanup()
    return samples


async def run(calls: int, frames: int, starts: int) -> None:
    with tempfile.TemporaryDirectory(prefix="o16n-bench-") as tmp:
        workdir = Path(tmp)
        compute, uri = await start_compute_node(
            workdir / "compute",
            O16N_PYTHON_POOL_INITIAL_SIZE="1",
            O16N_R_POOL_INITIAL_SIZE="1",
            O16N_LOG_LEVEL="WARNING",
        )
        web = await start_web_node(workdir / "web", [uri], O16N_LOG_LEVEL="WARNING")
        rows: list[tuple[str, str, str, str]] = []
        try:
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {await login(http, web.url)}", "Content-Type": "application/json"}
                params = [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}]
                big = orjson.dumps({"d": frame(ROWS)})
                add, echo = {}, {}
                for runtime in RUNTIMES:
                    add[runtime] = await publish(
                        http,
                        web.url,
                        headers,
                        {
                            "code": ADD[runtime],
                            "runtimeType": runtime,
                            "inputParameterDefinitions": params,
                            "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
                        },
                    )
                    echo[runtime] = await publish(
                        http,
                        web.url,
                        headers,
                        {
                            "code": ECHO[runtime],
                            "runtimeType": runtime,
                            "inputParameterDefinitions": [{"name": "d", "type": "data.frame"}],
                            "outputParameterDefinitions": [{"name": "out", "type": "data.frame"}],
                        },
                    )
                # Calls alternate between the runtimes so both see the same machine load.
                small = await alternating(http, add, headers, b'{"x":1,"y":2}', calls, warmup=20)
                large = await alternating(http, echo, headers, big, frames, warmup=2)
                for runtime in RUNTIMES:
                    rows.append((runtime, f"x + y, {calls} sequential calls", *_p50_p99(small[runtime])))
                for runtime in RUNTIMES:
                    rows.append(
                        (runtime, f"{ROWS:,}-row data.frame round trip, {frames} calls", *_p50_p99(large[runtime]))
                    )
        finally:
            web.process.stop()
            compute.stop()
        direct, cpu = await shell_calls(workdir / "direct", calls)
        for runtime in RUNTIMES:
            rows.append((runtime, f"x + y in a warm shell, no HTTP/gRPC, {calls} calls", *_p50_p99(direct[runtime])))
        for runtime in RUNTIMES:
            rows.append((runtime, f"shell CPU time per x + y call (mean of {calls})", _us(cpu[runtime]), ""))
        cold: dict[str, list[float]] = {runtime: [] for runtime in RUNTIMES}
        for _ in range(starts):  # alternating too
            for runtime in RUNTIMES:
                cold[runtime] += await cold_start(SPECS[runtime], workdir / "shells", 1)
        for runtime in RUNTIMES:
            samples = cold[runtime]
            rows.append(
                (runtime, f"shell cold start, {starts} starts", _ms(percentile(samples, 0.5)), _ms(max(samples)))
            )
    print("| runtime | measure | p50 | p99 (max for cold start) |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _p50_p99(samples: list[float]) -> tuple[str, str]:
    return _ms(percentile(samples, 0.5)), _ms(percentile(samples, 0.99))


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.frames, args.starts))


if __name__ == "__main__":
    main()
