"""Coordination between web nodes: broadcast invalidations and short-lived shared counters.

Two backends behind one interface: `MemoryCoordinator` (one-box, in-process) and
`RedisCoordinator` (cluster). Redis holds nothing that cannot be rebuilt from the store:
when a subscriber reconnects it receives RESYNC so it reloads what it caches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

RESYNC = "*"  # delivered to every subscriber after a reconnect: messages may have been lost

Callback = Callable[[str], None]


class Coordinator(Protocol):
    async def start(self) -> None: ...
    async def publish(self, channel: str, message: str) -> None: ...
    def subscribe(self, channel: str, callback: Callback) -> None: ...
    async def incr(self, key: str, ttl: float) -> int: ...
    async def delete(self, key: str) -> None: ...
    async def details(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...
