"""`make bench-memory`: RSS of each process idle, then after many services, sessions and consumptions.

Loopback only; bounded (about 3 minutes with the defaults). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
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


async def main(services: int, sessions: int, seconds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="o16n-memory-"))
    compute, uri = await start_compute_node(
        work / "compute",
        O16N_PYTHON_POOL_INITIAL_SIZE="2",
        O16N_PYTHON_POOL_MAX_SIZE=str(sessions + 2),
        O16N_R_ENABLED="false",
        O16N_LOG_LEVEL="WARNING",
    )
    web = await start_web_node(work / "web", [uri], O16N_LOG_LEVEL="WARNING")
    rows: list[tuple[str, float, float, float]] = []

    def snapshot() -> tuple[float, float, float]:
        shells = [rss_mb(pid) for pid in children(compute.popen.pid)]
        return rss_mb(web.process.popen.pid), rss_mb(compute.popen.pid), max(shells, default=0.0)

    try:
        async with aiohttp.ClientSession() as http:
            token = await login(http, web.url)
            headers = {"Authorization": f"Bearer {token}"}
            rows.append(("idle", *snapshot()))
            for i in range(services):
                async with http.post(f"{web.url}/services/mem{i}/1.0", json=ADD, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                async with http.post(f"{web.url}/api/mem{i}/1.0", data=ADD_BODY, headers=headers) as resp:
                    assert resp.status == 200
                    await resp.read()
            rows.append((f"after {services} services published and consumed once", *snapshot()))
            ids = []
            for _ in range(sessions):
                async with http.post(f"{web.url}/sessions", json={"runtimeType": "Python"}, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                    ids.append((await resp.json())["sessionId"])
            rows.append((f"with {sessions} open sessions", *snapshot()))
            for sid in ids:
                async with http.delete(f"{web.url}/sessions/{sid}", headers=headers):
                    pass
            total = 0
            for round_ in range(3):
                result = load.run(web.url, ["/api/mem0/1.0"], ADD_BODY, token=token, concurrency=8, seconds=seconds)
                total += int(result.rps * seconds)
                rows.append((f"after about {total:,} consumptions (round {round_ + 1})", *snapshot()))
    finally:
        web.process.stop()
        compute.stop()
    print("| point | web node MB | compute node MB | largest shell MB |\n|---|---:|---:|---:|")
    for name, w, c, s in rows:
        print(f"| {name} | {w:.0f} | {c:.0f} | {s:.0f} |")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.services, args.sessions, args.seconds))
