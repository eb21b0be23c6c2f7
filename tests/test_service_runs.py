"""Runs: requests of one fast service that arrive in one Call message go to one shell in one write.

The shell runs them one after another, each in a fresh namespace as always; a request that
crashes or hangs the shell fails alone, and those queued behind it run on other shells.
Talks to a real compute node over the Call stream, as a web node does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest

from common.pb import compute_pb2 as pb
from common.pb import compute_pb2_grpc as pb_grpc
from tests.support import start_compute_node, wait_until
from webnode.compute.client import grpc_target

# The reply says which shell ran it, and whether the namespace was fresh (seen == 1).
CODE = """
import os, time
seen = globals().get("seen", 0) + 1
if x == crash_at:
    os._exit(3)
if x == hang_at:
    time.sleep(60)
result = [x, os.getpid(), seen]
"""


def service(key: str) -> pb.ServiceDefinition:
    return pb.ServiceDefinition(
        key=key,
        runtime=pb.PYTHON,
        code=CODE,
        inputs=[pb.Parameter(name=n, type="numeric") for n in ("x", "crash_at", "hang_at")],
        outputs=[pb.Parameter(name="result", type="vector")],
    )


@pytest.fixture
async def call_stream(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.StreamStreamCall]:
    env = {
        "O16N_PYTHON_POOL_INITIAL_SIZE": "4",
        "O16N_PYTHON_POOL_MAX_SIZE": "4",
        "O16N_EXECUTION_TIMEOUT": "3",
        # Budget for any run length up to the maximum (16): the runs here are as long as the batches.
        "O16N_SHELL_RUN_BUDGET_MS": "1000",
        **getattr(request, "param", {}),
    }
    process, uri = await start_compute_node(tmp_path / "compute", **env)
    try:
        async with grpc.aio.insecure_channel(grpc_target(uri)) as channel:
            stub = pb_grpc.ComputeStub(channel)  # type: ignore[no-untyped-call]
            await stub.LoadService(pb.LoadServiceRequest(service=service("runs/1.0@1")), timeout=30)

            async def all_shells_idle() -> bool:
                status = await stub.GetStatus(pb.GetStatusRequest(), timeout=10)
                return any(pool.runtime == pb.PYTHON and pool.idle == 4 for pool in status.pools)

            await wait_until(all_shells_idle, timeout=60, what="4 idle Python shells")
            call = stub.Call()
            # One at a time first: the node learns that the service is fast.
            for i in range(5):
                await send(call, [1000 + i])
            yield call
            await call.done_writing()
    finally:
        process.stop()


async def send(
    call: grpc.aio.StreamStreamCall, xs: list[int], *, crash_at: int = -1, hang_at: int = -1
) -> dict[int, pb.CallReply]:
    """Send one request per x in one CallBatch (id = x); their replies by id."""
    inputs = [orjson.dumps({"x": x, "crash_at": crash_at, "hang_at": hang_at}) for x in xs]
    requests = [
        pb.CallRequest(id=x, execute_service=pb.ExecuteServiceRequest(service_key="runs/1.0@1", inputs_json=body))
        for x, body in zip(xs, inputs, strict=True)
    ]
    await call.write(pb.CallBatch(calls=requests))
    replies: dict[int, pb.CallReply] = {}
    while len(replies) < len(xs):
        batch = await asyncio.wait_for(call.read(), 30)
        replies.update((r.id, r) for r in batch.replies if r.WhichOneof("kind") in ("result", "error"))
    return replies


def outcome(reply: pb.CallReply) -> tuple[int, int, int]:
    assert reply.WhichOneof("kind") == "result", reply
    assert reply.result.success, reply.result.error_message
    x, pid, seen = orjson.loads(reply.result.outputs_json)["result"]
    return int(x), int(pid), int(seen)


async def test_requests_that_arrive_together_run_in_one_shell_each_in_a_fresh_namespace(
    call_stream: grpc.aio.StreamStreamCall,
) -> None:
    replies = await send(call_stream, list(range(1, 9)))
    results = [outcome(replies[x]) for x in range(1, 9)]
    assert [x for x, _, _ in results] == list(range(1, 9))  # each reply answers its own request
    assert {seen for _, _, seen in results} == {1}
    assert len({pid for _, pid, _ in results}) == 1, results


@pytest.mark.parametrize("call_stream", [{"O16N_SHELL_RUN_BUDGET_MS": "0"}], indirect=True)
async def test_with_no_run_budget_each_request_takes_a_shell_of_its_own(
    call_stream: grpc.aio.StreamStreamCall,
) -> None:
    replies = await send(call_stream, list(range(1, 9)))
    pids = {outcome(replies[x])[1] for x in range(1, 9)}
    assert len(pids) > 1, pids


async def test_a_request_that_crashes_the_shell_mid_run_fails_alone(call_stream: grpc.aio.StreamStreamCall) -> None:
    replies = await send(call_stream, list(range(1, 7)), crash_at=3)
    crashed = replies[3]
    assert crashed.WhichOneof("kind") == "error", crashed
    assert crashed.error.code == "shell_crashed", crashed.error
    before = [outcome(replies[x]) for x in (1, 2)]
    after = [outcome(replies[x]) for x in (4, 5, 6)]
    # Those queued behind it never ran in the crashed shell: they ran, once each, in others.
    assert all(pid != before[0][1] for _, pid, _ in after), (before, after)
    assert {seen for _, _, seen in before + after} == {1}


async def test_a_request_that_hangs_mid_run_times_out_alone(call_stream: grpc.aio.StreamStreamCall) -> None:
    replies = await send(call_stream, list(range(1, 6)), hang_at=2)
    assert replies[2].WhichOneof("kind") == "error", replies[2]
    assert replies[2].error.code == "timeout", replies[2].error
    assert [outcome(replies[x])[0] for x in (1, 3, 4, 5)] == [1, 3, 4, 5]


@pytest.mark.parametrize("call_stream", [{"O16N_SHELL_MAX_USES": "3"}], indirect=True)
async def test_a_run_never_takes_a_shell_past_max_uses(call_stream: grpc.aio.StreamStreamCall) -> None:
    replies = await send(call_stream, list(range(1, 9)))
    uses = Counter(outcome(replies[x])[1] for x in range(1, 9))
    assert max(uses.values()) <= 3, uses
