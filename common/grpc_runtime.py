"""gRPC's process-wide experiments, which it reads once: when the grpc module is first imported.

gRPC Python (grpcio 1.85) does a stream's socket I/O on EventEngine threads by default, and
hands each completion on to the asyncio loop through a poller thread: about ten thread context
switches per request on each of the web and compute nodes at concurrency 1. With the EventEngine
client and listener experiments off, the I/O happens in the polling thread itself: context
switches per request fall by half (web 10.3 -> 5.5, compute 10.2 -> 5.7 at concurrency 1;
1.7 -> 1.0 at 8), a bare Call round trip costs 30% less CPU on both ends and 35% less wall time
(`docs/benchmarks.md`, "gRPC").

Each process's settings carry O16N_GRPC_EXPERIMENTS; its entry point calls `apply` before it
imports anything that imports grpc. gRPC's own GRPC_EXPERIMENTS, when set, wins.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from common.settings import SettingsError

VARIABLE = "GRPC_EXPERIMENTS"
DEFAULT = "-event_engine_client,-event_engine_listener"
HELP = (
    "gRPC experiments to turn on (name) or off (-name), comma-separated, handed to gRPC as "
    "GRPC_EXPERIMENTS (which wins when set). The default turns off the EventEngine client and "
    "listener: half the thread context switches per request and 30% less CPU per gRPC message; "
    "empty keeps gRPC's own defaults."
)
_NAME = re.compile(r"^-?[a-z0-9_]+$")

logger = logging.getLogger(__name__)


def validate(value: str) -> None:
    """SettingsError unless `value` is empty or a comma-separated list of [-]name."""
    for part in value.split(",") if value else ():
        if not _NAME.match(part.strip()):
            raise SettingsError(
                f"O16N_GRPC_EXPERIMENTS: {part.strip()!r} is not an experiment name (lower case, digits, "
                "underscores), optionally prefixed with - to turn it off"
            )


def apply(value: str) -> None:
    """Hand `value` to gRPC, unless GRPC_EXPERIMENTS is set already (by the operator, or by the
    one-box for its compute node). Too late once grpc is imported: that is logged, not raised."""
    if VARIABLE in os.environ or not value:
        return
    if "grpc" in sys.modules:
        logger.warning("O16N_GRPC_EXPERIMENTS=%s is ignored: gRPC was loaded before it could be applied", value)
        return
    os.environ[VARIABLE] = ",".join(part.strip() for part in value.split(","))
