"""Both coordination backends (in-process, Redis) pass the same suite; Redis against the real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from common.errors import Unavailable
from tests.support import REDIS_URL, wait_until
from webnode.coord.base import Coordinator
from webnode.coord.memory import MemoryCoordinator
from webnode.coord.redis import RedisCoordinator


@pytest.fixture(params=["memory", "redis"])
async def coordinators(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    """Two coordinators that see each other (two web nodes); the same object twice for in-process."""
    if request.param == "memory":
        memory = MemoryCoordinator()
        await memory.start()
        yield memory, memory
        await memory.close()
        return
    prefix = f"o16n-test-{uuid.uuid4().hex[:8]}:"
    first, second = RedisCoordinator(REDIS_URL, prefix), RedisCoordinator(REDIS_URL, prefix)
    for c in (first, second):
        await c.start()
    await wait_until(lambda: _subscribed(first, second), timeout=10, what="redis subscriptions")
    yield first, second
    for c in (first, second):
        await c.close()


async def _subscribed(*coordinators: RedisCoordinator) -> bool:
    states = [(await c.details())["subscribed"] for c in coordinators]
    return all(states)


async def test_publish_reaches_subscribers_on_other_nodes(coordinators: tuple[Coordinator, Coordinator]) -> None:
    first, second = coordinators
    received: list[str] = []
    second.subscribe("services", received.append)
    await first.publish("services", "add/1.0")
    await first.publish("other", "ignored")

    async def got() -> bool:
        return received == ["add/1.0"]

    await wait_until(got, timeout=5, what="the message")


async def test_counters_expire_and_reset(coordinators: tuple[Coordinator, Coordinator]) -> None:
    first, second = coordinators
    key = f"failed:{uuid.uuid4().hex}"
    assert await first.incr(key, ttl=60) == 1
    assert await second.incr(key, ttl=60) == 2
    await first.delete(key)
    assert await second.incr(key, ttl=1) == 1

    async def expired() -> bool:
        return await first.incr(key + ":probe", ttl=1) >= 1 and await second.incr(key, ttl=1) == 1

    await asyncio.sleep(0)
    await wait_until(expired, timeout=5, what="the counter to expire")


async def test_unreachable_redis_is_unavailable() -> None:
    coordinator = RedisCoordinator("redis://127.0.0.1:1/0", "x:")
    with pytest.raises(Unavailable):
        await coordinator.incr("k", ttl=1)
    with pytest.raises(Unavailable):
        await coordinator.details()
    await coordinator.close()


async def test_count_reads_without_incrementing(coordinators: tuple[Coordinator, Coordinator]) -> None:
    first, second = coordinators
    key = f"count:{uuid.uuid4().hex}"
    assert await first.count(key) == 0
    await first.incr(key, ttl=60)
    assert await second.count(key) == 1
    assert await second.count(key) == 1
