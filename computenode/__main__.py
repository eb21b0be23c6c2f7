"""`python -m computenode`: run one compute node until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from common import eventloop
from common import logging as o16n_logging
from common.settings import load
from computenode.server import start_compute_node
from computenode.settings import ComputeNodeSettings


async def serve(settings: ComputeNodeSettings) -> None:
    node = await start_compute_node(settings)
    print(f"o16n compute node listening on {settings.compute_host}:{node.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop()


def main() -> None:
    settings = load(ComputeNodeSettings)
    o16n_logging.configure(settings.log_level, name="computenode")
    eventloop.run(serve(settings))


if __name__ == "__main__":
    main()
