"""Measure shell cold start (Python, R) and pool acquire/release overhead on real shells.

    .venv/bin/python scripts/bench_pools.py [--starts 5] [--leases 5000]

Cold start: from spawning the child process to its first answer (`ping`), sequentially,
with the imports each shell warms (numpy/pandas for Python; R through rpy2).
Acquire/release: one warm idle shell, lease and return it in a loop (no request sent);
plus a lease + `ping` round trip for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from computenode.pools import PoolConfig, ShellPool
from computenode.shells.process import PYTHON, R, ShellProcess, ShellSpec


def summary(samples: list[float], unit: float, name: str) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * unit
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * unit
    return f"p50 {p50:.1f} {name}, p99 {p99:.1f} {name}, mean {statistics.fmean(samples) * unit:.1f} {name}"


async def cold_starts(spec: ShellSpec, root: Path, count: int) -> tuple[list[float], list[float]]:
    """Wall time to the first answer, and the CPU time (user + system) the shell spent on it."""
    times, cpu = [], []
    for _ in range(count):
        shell = ShellProcess(spec, root)
        started = time.perf_counter()
        await shell.start(120)
        times.append(time.perf_counter() - started)
        cpu.append(_cpu_seconds(shell.pid or 0))
        await shell.terminate(grace=1)
        shell.cleanup()
    return times, cpu


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def leases(root: Path, count: int) -> tuple[list[float], list[float]]:
    config = PoolConfig(
        initial_size=1, max_size=1, acquire_timeout=30, queue_limit=10, max_uses=10**9, start_timeout=60
    )
    pool = ShellPool(PYTHON, config, root)
    await pool.start()
    await pool.release(await pool.acquire())  # waits for the warm shell
    bare, ping = [], []
    try:
        for _ in range(count):
            started = time.perf_counter()
            shell = await pool.acquire()
            await pool.release(shell)
            bare.append(time.perf_counter() - started)
        for _ in range(count // 5):
            started = time.perf_counter()
            async with pool.lease() as shell:
                await shell.request({"op": "ping"}, timeout=10)
            ping.append(time.perf_counter() - started)
    finally:
        await pool.close()
    return bare, ping


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--leases", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        py, py_cpu = await cold_starts(PYTHON, root, args.starts)
        print(f"python shell cold start ({args.starts}x): {summary(py, 1000, 'ms')}")
        print(f"  CPU time it used:            {summary(py_cpu, 1000, 'ms')}")
        try:
            r, r_cpu = await cold_starts(R, root, args.starts)
            print(f"R shell cold start ({args.starts}x):      {summary(r, 1000, 'ms')}")
            print(f"  CPU time it used:            {summary(r_cpu, 1000, 'ms')}")
        except Exception as exc:  # R not installed
            print(f"R shell cold start: unavailable ({exc})")
        bare, ping = await leases(root, args.leases)
        print(f"pool acquire+release ({len(bare)}x):  {summary(bare, 1e6, 'us')}")
        print(f"lease + ping round trip ({len(ping)}x): {summary(ping, 1e6, 'us')}")


if __name__ == "__main__":
    asyncio.run(main())
