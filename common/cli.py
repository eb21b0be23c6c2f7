"""The `o16n` command: run the pieces, or all of them as a one-box."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys

from common import eventloop, grpc_runtime
from common.settings import SettingsError, load
from computenode.settings import ComputeNodeSettings
from webnode.settings import WebNodeSettings


async def _wait_for_port(host: str, port: int, child: asyncio.subprocess.Process, *, timeout: float) -> None:
    """Until the compute node accepts connections (so the first request does not find it starting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and child.returncode is None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


def _onebox(settings: WebNodeSettings) -> int:
    """A web node in this process and a compute node as a child process, both on 127.0.0.1."""
    from common import logging as o16n_logging
    from webnode.__main__ import serve

    compute_port = os.environ.get("O16N_COMPUTE_PORT", "12805")
    if not settings.compute_nodes:
        settings = dataclasses.replace(settings, compute_nodes=[f"http://127.0.0.1:{compute_port}"])
    o16n_logging.configure(settings.log_level, name="webnode")

    async def run() -> int:
        env = {**os.environ, "O16N_COMPUTE_HOST": "127.0.0.1", "O16N_COMPUTE_PORT": compute_port}
        child = await asyncio.create_subprocess_exec(sys.executable, "-m", "computenode", env=env)
        await _wait_for_port("127.0.0.1", int(compute_port), child, timeout=120)
        stop = asyncio.Event()
        web_task = asyncio.get_running_loop().create_task(serve(settings, stop))
        child_task = asyncio.get_running_loop().create_task(child.wait())
        done, _ = await asyncio.wait({web_task, child_task}, return_when=asyncio.FIRST_COMPLETED)
        if child_task in done and not stop.is_set():
            # The compute node stopped on its own (killed, crashed): the web node keeps
            # serving and /status reports it; Ctrl-C ends the one-box.
            print("o16n: the compute node exited; /status reports it as failed", file=sys.stderr, flush=True)
            await web_task
        stop.set()
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), 15)
            except TimeoutError:
                child.kill()
                await child.wait()
        await web_task
        return 0

    return eventloop.run(run())


def _settings(argv: list[str]) -> WebNodeSettings | ComputeNodeSettings | SettingsError:
    """The settings of the process `argv` starts, loaded once, with O16N_GRPC_EXPERIMENTS applied
    before anything imports grpc; a bad setting is returned for the commands that need them."""
    cls: type[WebNodeSettings | ComputeNodeSettings] = (
        ComputeNodeSettings if argv[:1] == ["computenode"] else WebNodeSettings
    )
    try:
        settings = load(cls)
    except SettingsError as exc:
        return exc
    grpc_runtime.apply(settings.grpc_experiments)
    return settings


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        print(f"o16n: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    settings = _settings(argv)
    parser = argparse.ArgumentParser(prog="o16n", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("onebox", help="run a web node and a compute node on 127.0.0.1")
    sub.add_parser("webnode", help="run a web node")
    sub.add_parser("computenode", help="run a compute node")
    sub.add_parser("settings", help="print every setting with its default and help")
    admin = sub.add_parser("admin", help="administration helpers").add_subparsers(dest="admin", required=True)
    certs = admin.add_parser("certs", help="write a private CA and certificates for HTTPS and web/compute mTLS")
    certs.add_argument("--out", default="certs", help="directory to write the PEM files into (default: certs)")
    certs.add_argument("--host", action="append", default=[], help="host name or address to certify (repeatable)")
    certs.add_argument("--days", type=int, default=825, help="validity in days (default: 825)")
    from webnode import admin_cli

    admin_cli.add_commands(admin)
    args = parser.parse_args(argv)
    if args.command == "admin" and args.admin in admin_cli.COMMANDS:
        return admin_cli.run(args)
    if args.command in ("onebox", "webnode", "computenode") and isinstance(settings, SettingsError):
        raise settings
    if args.command == "onebox":
        assert isinstance(settings, WebNodeSettings)
        return _onebox(settings)
    if args.command == "webnode":
        from webnode.__main__ import main as web_main

        assert isinstance(settings, WebNodeSettings)
        web_main(settings)
        return 0
    if args.command == "computenode":
        from computenode.__main__ import main as compute_main

        assert isinstance(settings, ComputeNodeSettings)
        compute_main(settings)
        return 0
    if args.command == "admin" and args.admin == "certs":
        from pathlib import Path

        from common.certs import generate

        for path in generate(Path(args.out), args.host, args.days):
            print(path)
        return 0
    if args.command == "settings":
        from common.settings import describe

        seen = set()
        for cls in (WebNodeSettings, ComputeNodeSettings):
            for env, default, help_text in describe(cls):
                if env not in seen:
                    seen.add(env)
                    print(f"{env}={default}\n    {help_text}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
