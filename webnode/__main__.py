"""`python -m webnode`: run one web node until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl

from aiohttp import web

from common import eventloop, grpc_runtime
from common import logging as o16n_logging
from common.settings import load_or_exit
from webnode.settings import WebNodeSettings


async def serve(settings: WebNodeSettings, stop: asyncio.Event | None = None) -> None:
    from webnode.app import create_app  # imports grpc: after grpc_runtime.apply

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ssl_context = None
    if settings.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    scheme = "https" if ssl_context else "http"
    print(f"o16n web node listening on {scheme}://{settings.host}:{port}", flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(settings: WebNodeSettings | None = None) -> None:
    """Run until SIGINT/SIGTERM with `settings` (the `o16n` command's), else this process's own."""
    if settings is None:
        settings = load_or_exit(WebNodeSettings, "web node")
        grpc_runtime.apply(settings.grpc_experiments)
    o16n_logging.configure(settings.log_level, name="webnode")
    eventloop.run(serve(settings))


if __name__ == "__main__":
    main()
