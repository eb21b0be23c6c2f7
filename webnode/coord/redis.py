"""Redis coordination for cluster mode: pub/sub invalidations and expiring counters."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from common.errors import Unavailable
from webnode.coord.base import RESYNC, Callback

logger = logging.getLogger(__name__)


class RedisCoordinator:
    def __init__(self, url: str, prefix: str = "o16n:") -> None:
        self._prefix = prefix
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10)
        self._subscribers: dict[str, list[Callback]] = collections.defaultdict(list)
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    def subscribe(self, channel: str, callback: Callback) -> None:
        self._subscribers[channel].append(callback)

    async def publish(self, channel: str, message: str) -> None:
        for attempt in (1, 2):
            try:
                await self._redis.publish(self._prefix + channel, message)
                return
            except (RedisConnectionError, OSError) as exc:
                if attempt == 1:
                    continue  # a pooled connection from before a Redis restart: once more on a fresh one
                logger.warning("could not publish %s on %s: %s", message, channel, exc)
            except RedisError as exc:
                # The store is the source of truth; peers resync when they reconnect.
                logger.warning("could not publish %s on %s: %s", message, channel, exc)
                return

    async def incr(self, key: str, ttl: float) -> int:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._prefix + key)
                pipe.expire(self._prefix + key, max(1, int(ttl)), nx=True)
                value, _ = await pipe.execute()
            return int(value)
        except (RedisError, OSError) as exc:
            raise Unavailable("the coordination backend (Redis) is unavailable") from exc

    async def count(self, key: str) -> int:
        try:
            value = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise Unavailable("the coordination backend (Redis) is unavailable") from exc
        return int(value) if value is not None else 0

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise Unavailable("the coordination backend (Redis) is unavailable") from exc

    async def details(self) -> dict[str, Any]:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis: {exc}") from None
        return {"type": "redis", "subscribed": self._connected.is_set()}

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    def _deliver(self, channel: str, message: str) -> None:
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(message)
            except Exception:
                logger.exception("subscriber of %s failed", channel)

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self._prefix + "*")
                self._connected.set()
                delay = 0.1
                if not first:
                    for channel in list(self._subscribers):
                        self._deliver(channel, RESYNC)
                first = False
                async for item in pubsub.listen():
                    if item.get("type") != "pmessage":
                        continue
                    channel = item["channel"].decode()[len(self._prefix) :]
                    self._deliver(channel, item["data"].decode())
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._connected.is_set():
                    logger.warning("lost the Redis subscription: %s", exc)
                self._connected.clear()
                first = False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
