"""Session latency figures through real nodes (one-box): execute round trip p50, create from a warm pool.

Loose bounds keep the suite stable on a busy machine; the printed figures are what matters (`-s`).
"""

from __future__ import annotations

import statistics
import time

import aiohttp

from tests.support import WebNode, wait_until
from tests.test_sessions import new_session


async def _p50_execute(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], sid: str, code: str
) -> float:
    url = f"{server.url}/sessions/{sid}/execute"
    body = {"code": code, "outputParameters": ["x"]}
    for _ in range(20):  # warm up
        async with http.post(url, json=body, headers=auth) as resp:
            assert resp.status == 200
            await resp.read()
    times = []
    for _ in range(200):
        started = time.perf_counter()
        async with http.post(url, json=body, headers=auth) as resp:
            await resp.read()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def test_execute_round_trip_p50(onebox_server: WebNode, http: aiohttp.ClientSession) -> None:
    server = onebox_server
    auth = await server.headers(http)
    python_sid = await new_session(server, http, auth)
    async with http.post(f"{server.url}/sessions", json={"runtimeType": "R"}, headers=auth) as resp:
        r_sid = (await resp.json())["sessionId"]
    try:
        python_ms = await _p50_execute(server, http, auth, python_sid, "x = 1")
        r_ms = await _p50_execute(server, http, auth, r_sid, "x <- 1")
    finally:
        for sid in (python_sid, r_sid):
            async with http.delete(f"{server.url}/sessions/{sid}", headers=auth):
                pass
    print(f"\nsession execute round trip p50: Python {python_ms:.2f} ms, R {r_ms:.2f} ms")
    assert python_ms < 50 and r_ms < 50


async def test_create_from_warm_pool(onebox_server: WebNode, http: aiohttp.ClientSession) -> None:
    server = onebox_server
    auth = await server.headers(http)

    async def warm() -> bool:
        async with http.get(f"{server.url}/status", headers=auth) as resp:
            details = next(iter((await resp.json())["components"]["backends"]["components"].values()))["details"]
        return int(details["pythonIdleShellCount"]) >= 1

    times = []
    for _ in range(5):
        await wait_until(warm, timeout=60, what="an idle Python shell")
        started = time.perf_counter()
        sid = await new_session(server, http, auth)
        times.append(time.perf_counter() - started)
        async with http.delete(f"{server.url}/sessions/{sid}", headers=auth) as resp:
            assert resp.status == 200
    p50 = statistics.median(times) * 1000
    print(
        f"\nsession create from a warm pool p50: {p50:.1f} ms (all: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)"
    )
    assert p50 < 2000
