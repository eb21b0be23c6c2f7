"""The Call stream between web and compute nodes.

Replies travel together while other requests of the stream still run (O16N_REPLY_BATCH_HOLD_MS),
never held longer than the setting, and not at all when it is 0; large requests go on a stream
of their own. Talks to a real compute node, as a web node does, and reads which replies came in
which message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest

from common.pb import compute_pb2 as pb
from common.pb import compute_pb2_grpc as pb_grpc
from tests.support import Process, start_compute_node
from webnode.compute.client import BULK_BYTES, NodeClient, grpc_target

SLEEPY = pb.ServiceDefinition(
    key="sleepy/1.0@1",
    runtime=pb.PYTHON,
    code="import time\ntime.sleep(seconds)\nresult = seconds",
    inputs=[pb.Parameter(name="seconds", type="numeric")],
    outputs=[pb.Parameter(name="result", type="numeric")],
)


async def node(tmp_path: Path, hold_ms: str) -> AsyncIterator[str]:
    process: Process
    process, uri = await start_compute_node(
        tmp_path / f"hold-{hold_ms}",
        O16N_REPLY_BATCH_HOLD_MS=hold_ms,
        O16N_PYTHON_POOL_INITIAL_SIZE="4",
        O16N_PYTHON_POOL_MAX_SIZE="4",
    )
    try:
        yield grpc_target(uri)
    finally:
        process.stop()


@pytest.fixture
async def holding(tmp_path: Path) -> AsyncIterator[str]:
    async for target in node(tmp_path, "1000"):
        yield target


@pytest.fixture
async def eager(tmp_path: Path) -> AsyncIterator[str]:
    async for target in node(tmp_path, "0"):
        yield target


async def run_batch(target: str, sleeps: list[float]) -> list[tuple[float, list[int]]]:
    """Send one request per sleep in one CallBatch; (arrival s, request ids) of each reply message."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ComputeStub(channel)  # type: ignore[no-untyped-call]
        await stub.LoadService(pb.LoadServiceRequest(service=SLEEPY), timeout=30)
        call = stub.Call()
        # Warm: every shell loads the service before the timed batch.
        warm = [pb.CallRequest(id=100 + i, execute_service=execute(0.3)) for i in range(4)]
        await call.write(pb.CallBatch(calls=warm))
        await read_replies(call, len(warm))
        requests = [pb.CallRequest(id=i + 1, execute_service=execute(s)) for i, s in enumerate(sleeps)]
        started = time.monotonic()
        await call.write(pb.CallBatch(calls=requests))
        messages = await read_replies(call, len(requests), started)
        await call.done_writing()
        return messages


def execute(seconds: float) -> pb.ExecuteServiceRequest:
    return pb.ExecuteServiceRequest(service_key=SLEEPY.key, inputs_json=orjson.dumps({"seconds": seconds}))


async def read_replies(
    call: grpc.aio.StreamStreamCall, count: int, started: float = 0.0
) -> list[tuple[float, list[int]]]:
    messages: list[tuple[float, list[int]]] = []
    seen = 0
    while seen < count:
        batch = await asyncio.wait_for(call.read(), 30)
        results = [r for r in batch.replies if r.WhichOneof("kind") == "result"]
        for reply in results:
            assert reply.result.success, reply.result.error_message
        if results:
            messages.append((time.monotonic() - started, [r.id for r in results]))
            seen += len(results)
    return messages


async def test_replies_of_a_stream_travel_together_while_others_still_run(holding: str) -> None:
    # Four shells, four requests finishing 0.1 s apart: within the hold, one message.
    messages = await run_batch(holding, [0.0, 0.1, 0.2, 0.3])
    assert [sorted(ids) for _, ids in messages] == [[1, 2, 3, 4]], messages


async def test_a_reply_waits_no_longer_than_the_hold(tmp_path: Path) -> None:
    async for target in node(tmp_path, "200"):
        # The quick reply goes out once the hold has passed, not when the slow request ends.
        messages = await run_batch(target, [0.0, 2.0])
        assert [ids for _, ids in messages] == [[1], [2]], messages
        first_at, _ = messages[0]
        assert 0.2 <= first_at < 1.5, messages


async def test_without_a_hold_each_reply_goes_out_when_ready(eager: str) -> None:
    messages = await run_batch(eager, [0.0, 0.3, 0.6])
    assert [ids for _, ids in messages] == [[1], [2], [3]], messages


async def test_large_requests_travel_on_a_stream_of_their_own(holding: str) -> None:
    client = NodeClient(f"http://{holding}")
    try:
        await client.load_service(SLEEPY)
        big = orjson.dumps({"seconds": 0.2, "pad": "x" * (2 * BULK_BYTES)})
        small = [client.execute_service(SLEEPY.key, orjson.dumps({"seconds": 0.2}), 30) for _ in range(3)]
        runs = [asyncio.ensure_future(c) for c in [*small, client.execute_service(SLEEPY.key, big, 30)]]
        await asyncio.sleep(0)  # queued on their streams
        shared, bulk = client._streams[0], client._bulk
        assert shared is not None and bulk is not None and shared is not bulk
        assert (shared.load, bulk.load) == (3, 1)
        results = await asyncio.gather(*runs)
        assert all(r.success for r in results), results  # the big one reached the node whole, too
    finally:
        await client.close()
