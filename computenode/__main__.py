"""`python -m computenode`: run one compute node until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from common import eventloop, grpc_runtime
from common import logging as o16n_logging
from common.settings import load_or_exit
from computenode.settings import ComputeNodeSettings


async def serve(settings: ComputeNodeSettings) -> None:
    from computenode.server import start_compute_node  # imports grpc: after grpc_runtime.apply

    node = await start_compute_node(settings)
    print(f"o16n compute node listening on {settings.compute_host}:{node.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop()


def main(settings: ComputeNodeSettings | None = None) -> None:
    """Run until SIGINT/SIGTERM with `settings` (the `o16n` command's), else this process's own."""
    if settings is None:
        settings = load_or_exit(ComputeNodeSettings, "compute node")
        grpc_runtime.apply(settings.grpc_experiments)
    o16n_logging.configure(settings.log_level, name="computenode")
    eventloop.run(serve(settings))


if __name__ == "__main__":
    main()
