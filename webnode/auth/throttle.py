"""Throttling of password logins, counted in the shared coordination backend.

Each FAILED attempt increments a counter per user name and per client address that
expires a window after its first increment; a successful login deletes both. Past a
threshold an attempt is refused with 429 and Retry-After before any password is checked.
Only failures count, so many concurrent legitimate logins of one account (several
application instances sharing a service account) are never throttled.
"""

from __future__ import annotations

import hashlib

from common.errors import TooManyRequests
from webnode.coord.base import Coordinator


def _key(kind: str, value: str) -> str:
    return f"login-attempts:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


class LoginThrottle:
    def __init__(self, coordinator: Coordinator, *, per_user: int, per_address: int, window: int) -> None:
        self._coord = coordinator
        self._per_user = per_user
        self._per_address = per_address
        self._window = window

    async def attempt(self, username: str, address: str) -> None:
        """TooManyRequests when the user or the address has failed too often in the window."""
        by_user = await self._coord.count(_key("user", username.casefold()))
        by_address = await self._coord.count(_key("address", address))
        if by_user >= self._per_user or by_address >= self._per_address:
            which = "this user" if by_user >= self._per_user else "this address"
            raise TooManyRequests(
                f"too many failed logins for {which}; retry after {self._window} seconds",
                headers={"Retry-After": str(self._window)},
            )

    async def failed(self, username: str, address: str) -> None:
        await self._coord.incr(_key("user", username.casefold()), self._window)
        await self._coord.incr(_key("address", address), self._window)

    async def succeeded(self, username: str, address: str) -> None:
        await self._coord.delete(_key("user", username.casefold()))
        await self._coord.delete(_key("address", address))
