"""Consumption benchmark of issue 5: trivial Python and R services through the whole stack vs a bare aiohttp handler.

    .venv/bin/python scripts/bench_services.py [--seconds 5]

Starts the floor (tests/bench/floor.py: an aiohttp handler doing x + y), a compute node and a
one-box web node (SQLite) as separate processes, publishes `result = x + y` (Python) and
`result <- x + y` (R), then runs closed-loop load with wrk at concurrency 1, 8 and 64 against
each, in the same run, and prints requests/s, p50, p99 and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.bench import load
from tests.support import ROOT, Process, free_port, start_compute_node, start_web_node, wait_until

BODY = '{"x": 1, "y": 2}'
DEFINITIONS = {
    "python": {"runtimeType": "Python", "code": "result = x + y"},
    "r": {"runtimeType": "R", "code": "result <- x + y"},
}
PARAMS = {
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}


async def main(seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="o16n-bench-services-"))
    port = free_port()
    floor = _spawn_floor(work, port)
    compute, uri = await start_compute_node(
        work / "compute",
        O16N_PYTHON_POOL_INITIAL_SIZE="8",
        O16N_PYTHON_POOL_MAX_SIZE="8",
        O16N_R_POOL_INITIAL_SIZE="8",
        O16N_R_POOL_MAX_SIZE="8",
    )
    web = await start_web_node(work / "web", [uri], O16N_LOG_LEVEL="WARNING")
    try:
        async with aiohttp.ClientSession() as http:

            async def floor_up() -> bool:
                async with http.post(f"http://127.0.0.1:{port}/add", data=BODY) as resp:
                    return resp.status == 200

            await wait_until(floor_up, timeout=30, what="floor")
            token = await web.token(http)
            headers = {"Authorization": f"Bearer {token}"}
            for runtime, definition in DEFINITIONS.items():
                body = {**definition, **PARAMS}
                async with http.post(f"{web.url}/services/bench{runtime}/1.0", json=body, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()

                async def once(runtime: str = runtime) -> None:
                    async with http.post(f"{web.url}/api/bench{runtime}/1.0", data=BODY, headers=headers) as resp:
                        assert (await resp.json())["success"], runtime

                for _ in range(10):  # concurrent warm-up: the pool grows to its maximum before measuring
                    await asyncio.gather(*(once() for _ in range(16)))
        targets = {
            "floor (bare aiohttp)": (f"http://127.0.0.1:{port}", ["/add"], None),
            "Python service": (web.url, ["/api/benchpython/1.0"], token),
            "R service": (web.url, ["/api/benchr/1.0"], token),
        }
        print("| target | concurrency | req/s | p50 ms | p99 ms | errors | req/s vs floor |")
        print("|---|---|---|---|---|---|---|")
        for concurrency in (1, 8, 64):
            floor_rps = 0.0
            for label, (base, paths, auth) in targets.items():
                result = load.run(base, paths, BODY, token=auth, concurrency=concurrency, seconds=seconds)
                floor_rps = floor_rps or result.rps
                ratio = result.rps / floor_rps if floor_rps else 0.0
                print(
                    f"| {label} | {concurrency} | {result.rps:.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} "
                    f"| {result.errors} | {ratio:.3f} |",
                    flush=True,
                )
    finally:
        web.process.stop()
        compute.stop()
        floor.stop()


def _spawn_floor(work: Path, port: int) -> Process:
    log = work / "floor.log"
    handle = open(log, "wb")  # noqa: SIM115
    popen = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.floor", str(port)],
        cwd=str(ROOT),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle.close()
    return Process("floor", popen, log)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of load per target and concurrency")
    asyncio.run(main(parser.parse_args().seconds))
