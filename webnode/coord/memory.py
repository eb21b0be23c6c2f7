"""In-process coordination for the one-box mode (a single web node)."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from webnode.coord.base import Callback


class MemoryCoordinator:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callback]] = collections.defaultdict(list)
        self._counters: dict[str, tuple[int, float]] = {}

    async def start(self) -> None:
        return None

    async def publish(self, channel: str, message: str) -> None:
        loop = asyncio.get_running_loop()
        for callback in self._subscribers.get(channel, ()):
            loop.call_soon(callback, message)

    def subscribe(self, channel: str, callback: Callback) -> None:
        self._subscribers[channel].append(callback)

    async def incr(self, key: str, ttl: float) -> int:
        now = time.monotonic()
        value, expires = self._counters.get(key, (0, now + ttl))
        if expires <= now:
            value, expires = 0, now + ttl
        self._counters[key] = (value + 1, expires)
        return value + 1

    async def count(self, key: str) -> int:
        value, expires = self._counters.get(key, (0, 0.0))
        return value if expires > time.monotonic() else 0

    async def delete(self, key: str) -> None:
        self._counters.pop(key, None)

    async def details(self) -> dict[str, Any]:
        return {"type": "in-process"}

    async def close(self) -> None:
        self._subscribers.clear()
