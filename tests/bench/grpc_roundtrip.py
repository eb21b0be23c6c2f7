"""`make bench-grpc`: one Call-stream round trip (a CallBatch out, a ReplyBatch back) between two
processes, with gRPC's default experiments and with O16N_GRPC_EXPERIMENTS' default, alternating.

For each setting and batch size: wall time per round trip, CPU per round trip in the client and
in the server, and thread context switches per round trip in each (from /proc). The server
answers at once, so this is the transport's own cost, the part of every request that crosses
from a web node to a compute node.

    python -m tests.bench.grpc_roundtrip [--trips 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import eventloop, grpc_runtime
from tests.bench.cpu import context_switches, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = {"gRPC defaults": "", "O16N_GRPC_EXPERIMENTS default": grpc_runtime.DEFAULT}
BATCHES = (1, 8)
ADD = b'{"x":1,"y":2}'


# ------------------------------------------------------------------ the two processes
async def _serve(port_file: str) -> None:
    import grpc

    from common.pb import compute_pb2 as pb
    from common.pb import compute_pb2_grpc as pb_grpc

    class Echo(pb_grpc.ComputeServicer):  # type: ignore[misc]
        async def Call(self, batches, context):  # type: ignore[no-untyped-def]
            async for batch in batches:
                yield pb.ReplyBatch(
                    replies=[
                        pb.CallReply(id=c.id, result=pb.ExecutionResult(success=True, outputs_json=b'{"result":3.0}'))
                        for c in batch.calls
                    ]
                )

    server = grpc.aio.server()
    pb_grpc.add_ComputeServicer_to_server(Echo(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(port_file).write_text(str(port))
    await server.wait_for_termination()


async def _client(port: int, trips: int, batch: int) -> None:
    import grpc

    from common.pb import compute_pb2 as pb
    from common.pb import compute_pb2_grpc as pb_grpc

    request = pb.CallBatch(
        calls=[
            pb.CallRequest(
                id=i, execute_service=pb.ExecuteServiceRequest(service_key="k", inputs_json=b'{"x":1,"y":2}')
            )
            for i in range(batch)
        ]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.ComputeStub(channel).Call()  # type: ignore[no-untyped-call]
        for _ in range(200):  # warm up
            await call.write(request)
            await call.read()
        switches, cpu, started = context_switches("self"), time.process_time(), time.perf_counter()
        for _ in range(trips):
            await call.write(request)
            await call.read()
        wall = time.perf_counter() - started
        cpu, switches = time.process_time() - cpu, context_switches("self") - switches
        print(f"{wall / trips} {cpu / trips} {switches / trips}", flush=True)
        call.cancel()


# ------------------------------------------------------------------ the driver
@dataclass
class Trip:
    wall_us: float
    client_cpu_us: float
    server_cpu_us: float
    client_switches: float
    server_switches: float


def _measure(experiments: str, trips: int, batch: int, work: Path) -> Trip:
    env = {k: v for k, v in os.environ.items() if k != grpc_runtime.VARIABLE}
    if experiments:
        env[grpc_runtime.VARIABLE] = experiments
    port_file = work / f"port-{time.monotonic_ns()}"
    me = [sys.executable, "-m", "tests.bench.grpc_roundtrip"]
    server = subprocess.Popen([*me, "--serve", str(port_file)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the bench's gRPC server did not start")
            time.sleep(0.02)  # polling for readiness, not pacing the measurement
        port = int(port_file.read_text())
        cpu, switches = cpu_seconds(server.pid), context_switches(server.pid)
        out = subprocess.run(
            [*me, "--client", str(port), "--trips", str(trips), "--batch", str(batch)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        server_cpu, server_switches = cpu_seconds(server.pid) - cpu, context_switches(server.pid) - switches
    finally:
        server.kill()
        server.wait()
    wall, client_cpu, client_switches = (float(v) for v in out)
    return Trip(wall * 1e6, client_cpu * 1e6, server_cpu / trips * 1e6, client_switches, server_switches / trips)


def main(trips: int, rounds: int) -> None:
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="o16n-bench-grpc-"))
    results: dict[tuple[str, int], list[Trip]] = {}
    for _ in range(rounds):
        for batch in BATCHES:
            for name, experiments in SETTINGS.items():
                trip = _measure(experiments, trips, batch, work)
                results.setdefault((name, batch), []).append(trip)
                print(f"  {name:<30} batch {batch}: {trip}", file=sys.stderr, flush=True)
    print(f"\n{os.cpu_count()} cores, {trips} round trips per cell, median of {rounds} rounds\n")
    print(
        "| GRPC_EXPERIMENTS | requests per message | wall µs | client CPU µs | server CPU µs | "
        "client switches | server switches |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (name, batch), trips_ in results.items():
        med = {f: statistics.median(getattr(t, f) for t in trips_) for f in Trip.__dataclass_fields__}
        shown = SETTINGS[name] or "(gRPC's defaults)"
        print(
            f"| `{shown}` | {batch} | {med['wall_us']:.0f} | {med['client_cpu_us']:.0f} | "
            f"{med['server_cpu_us']:.0f} | {med['client_switches']:.1f} | {med['server_switches']:.1f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trips", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        eventloop.run(_serve(args.serve))
    elif args.client:
        eventloop.run(_client(args.client, args.trips, args.batch))
    else:
        main(args.trips, args.rounds)
