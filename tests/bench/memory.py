"""`make bench-memory`: RSS of each process idle, then after many services, sessions and consumptions.

Loopback only; bounded (about 8 minutes with the defaults: 1,000 services, 100 sessions, then
load at concurrency 8 until 1,000,000 consumptions). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.bench import load
from tests.bench.__main__ import ADD_BODY, children, rss_mb
from tests.support import login, start_compute_node, start_web_node

ADD = {
    "code": "result = x + y",
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}
ROUND_SECONDS = 30


class Snapshot:
    """RSS of the web node, the compute node and its shells at one point of the run."""

    def __init__(self, point: str, web_pid: int, compute_pid: int) -> None:
        shells = [rss_mb(pid) for pid in children(compute_pid)]
        self.point = point
        self.web = rss_mb(web_pid)
        self.compute = rss_mb(compute_pid)
        self.shells = len(shells)
        self.largest_shell = max(shells, default=0.0)
        self.all_shells = sum(shells)

    def row(self) -> str:
        return (
            f"| {self.point} | {self.web:.0f} | {self.compute:.0f} | {self.shells} "
            f"| {self.largest_shell:.0f} | {self.all_shells:,.0f} |"
        )


async def main(services: int, sessions: int, consumptions: int, max_minutes: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="o16n-memory-"))
    compute, uri = await start_compute_node(
        work / "compute",
        O16N_PYTHON_POOL_INITIAL_SIZE="2",
        O16N_PYTHON_POOL_MAX_SIZE=str(sessions + 2),
        O16N_R_ENABLED="false",
        O16N_LOG_LEVEL="WARNING",
    )
    web = await start_web_node(work / "web", [uri], O16N_LOG_LEVEL="WARNING")
    rows: list[Snapshot] = []

    def snapshot(point: str) -> None:
        rows.append(Snapshot(point, web.process.popen.pid, compute.popen.pid))
        print(rows[-1].row(), flush=True)

    started = time.monotonic()
    errors = 0
    try:
        async with aiohttp.ClientSession() as http:
            token = await login(http, web.url)
            headers = {"Authorization": f"Bearer {token}"}
            snapshot("idle")
            for i in range(services):
                async with http.post(f"{web.url}/services/mem{i}/1.0", json=ADD, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                async with http.post(f"{web.url}/api/mem{i}/1.0", data=ADD_BODY, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
            snapshot(f"after {services:,} services published and consumed once")
            ids = []
            for _ in range(sessions):
                async with http.post(f"{web.url}/sessions", json={"runtimeType": "Python"}, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                    ids.append((await resp.json())["sessionId"])
            snapshot(f"with {sessions} open sessions")
            for sid in ids:
                async with http.delete(f"{web.url}/sessions/{sid}", headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
            snapshot(f"after closing the {sessions} sessions")
            total, milestone = 0, consumptions // 4
            deadline = started + max_minutes * 60
            while total < consumptions and time.monotonic() < deadline:
                result = load.run(
                    web.url, ["/api/mem0/1.0"], ADD_BODY, token=token, concurrency=8, seconds=ROUND_SECONDS
                )
                total += result.requests
                errors += result.errors
                if total >= milestone or total >= consumptions:
                    snapshot(f"after {total:,} consumptions")
                    milestone = (total // (consumptions // 4) + 1) * (consumptions // 4)
    finally:
        web.process.stop()
        compute.stop()
    minutes = (time.monotonic() - started) / 60
    print(f"\n{minutes:.1f} minutes; {errors} errors among the consumptions\n")
    print(
        "| point | web node MB | compute node MB | shells | largest shell MB | all shells MB |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for row in rows:
        print(row.row())
    print(json.dumps({"rows": [vars(r) for r in rows], "errors": errors, "minutes": minutes}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--consumptions", type=int, default=1_000_000)
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop the load after this long")
    args = parser.parse_args()
    asyncio.run(main(args.services, args.sessions, args.consumptions, args.max_minutes))
