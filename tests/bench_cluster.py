"""Cluster benchmark: throughput of a Python service with 1 and with 2 compute nodes, and the time
to detect and route around a compute node killed with SIGKILL under load.

    .venv/bin/python -m tests.bench_cluster [--seconds 10] [--concurrency 16]

Everything runs on this machine (web node, compute nodes, shells, load generator), so the
ratio is bounded by its CPU cores: the figures say how far the second node helps here, not what
two machines would give.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.support import Process, WebNode, free_port, login, start_web_node, wait_until
from tests.test_cluster import ADD, SECRET, ComputeNodeProcess, backends, publish, start_compute


async def _load(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], name: str, seconds: float, concurrency: int
) -> tuple[Counter[int], float, list[float]]:
    statuses: Counter[int] = Counter()
    errors_at: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            async with http.post(f"{url}/api/{name}/1.0", json={"x": 1, "y": 2}, headers=auth) as resp:
                await resp.read()
                statuses[resp.status] += 1
                if resp.status != 200:
                    errors_at.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, time.monotonic() - started, errors_at


def _cpu_seconds() -> float:
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


async def main(seconds: float, concurrency: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="o16n-bench-cluster-"))
    processes: list[Process] = []
    try:
        computes: list[ComputeNodeProcess] = list(
            await asyncio.gather(
                *(start_compute(root / f"cn{i}", free_port(), O16N_PYTHON_POOL_INITIAL_SIZE="2") for i in range(2))
            )
        )
        processes += [c.process for c in computes]
        web = await start_web_node(
            root / "web", [computes[0].uri], O16N_COMPUTE_SECRET=SECRET, O16N_HEALTH_INTERVAL="0.5"
        )
        processes.append(web.process)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            auth = {"Authorization": f"Bearer {await login(http, web.url)}"}
            name = await publish(http, web.url, auth, ADD)
            print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
            print(f"Python service `result = x + y`, {concurrency} concurrent clients, {seconds:g} s per run")
            rates = {}
            for uris in ([computes[0].uri], [c.uri for c in computes]):
                async with http.post(f"{web.url}/computenodes", json={"entries": uris}, headers=auth) as resp:
                    assert resp.status == 200
                await wait_until(lambda u=uris: _all_up(http, web, u), timeout=20, what="nodes healthy")
                await _load(http, web.url, auth, name, 2, concurrency)  # warm: load the service on each node
                cpu0 = _cpu_seconds()
                statuses, elapsed, _ = await _load(http, web.url, auth, name, seconds, concurrency)
                busy = (_cpu_seconds() - cpu0) / elapsed
                rates[len(uris)] = statuses[200] / elapsed
                print(
                    f"{len(uris)} compute node(s): {rates[len(uris)]:.0f} req/s {dict(statuses)}; "
                    f"machine CPU busy {busy:.2f} of {os.cpu_count()} cores"
                )
            print(f"ratio 2 nodes / 1 node: {rates[2] / rates[1]:.2f}")

            # SIGKILL one node under load: errors, and when the last one happened.
            task = asyncio.get_running_loop().create_task(_load(http, web.url, auth, name, 6, concurrency))
            await asyncio.sleep(2)  # measuring: let the load run before the kill
            computes[1].process.kill()
            killed = time.monotonic()
            await wait_until(lambda: _reported_dead(http, web, computes[1].uri), timeout=10, what="dead node reported")
            reported = time.monotonic() - killed
            statuses, _, errors_at = await task
            last = max(errors_at) - killed if errors_at else 0.0
            print(
                f"SIGKILL of one of 2 nodes under load: {dict(statuses)}; last error {last * 1000:.0f} ms after "
                f"the kill; /status reports it failed {reported * 1000:.0f} ms after the kill"
            )
    finally:
        for process in processes:
            process.stop()


async def _all_up(http: aiohttp.ClientSession, web: WebNode, uris: list[str]) -> bool:
    seen = await backends(http, web)
    return set(seen) == set(uris) and set(seen.values()) == {"up"}


async def _reported_dead(http: aiohttp.ClientSession, web: WebNode, uri: str) -> bool:
    return (await backends(http, web)).get(uri) == "fail"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
