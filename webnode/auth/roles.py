"""Roles and the one permission table every handler consults (semantics §5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from common.errors import Forbidden
from webnode.auth.tokens import Principal

OWNER, CONTRIBUTOR, READER = "Owner", "Contributor", "Reader"
ROLES = (OWNER, CONTRIBUTOR, READER)


class Action(Enum):
    CONSUME = "consume"
    LIST = "list"
    PUBLISH = "publish"
    MANAGE_OWN = "manage own services"
    MANAGE_ANY = "manage any service"
    ADMIN = "administer compute nodes"
    SESSIONS = "use sessions"


PERMISSIONS: dict[str, frozenset[Action]] = {
    OWNER: frozenset(Action),
    CONTRIBUTOR: frozenset({Action.CONSUME, Action.LIST, Action.PUBLISH, Action.MANAGE_OWN, Action.SESSIONS}),
    READER: frozenset({Action.CONSUME, Action.LIST}),
}


@dataclass(frozen=True)
class RoleMapping:
    """Group -> role mapping from settings, with ML Server's defaults for users no group maps.

    A user in several mapped groups gets the highest role. With no mapped group: no roles
    configured, or only Owner -> Contributor; Contributor (with or without Owner) -> Reader;
    any configuration that declares Reader -> None (all API access denied).
    Group names compare case-insensitively, as directory group names do.
    """

    owner: frozenset[str] = frozenset()
    contributor: frozenset[str] = frozenset()
    reader: frozenset[str] = frozenset()

    @classmethod
    def from_lists(cls, owner: Iterable[str], contributor: Iterable[str], reader: Iterable[str]) -> RoleMapping:
        def norm(groups: Iterable[str]) -> frozenset[str]:
            return frozenset(g.strip().casefold() for g in groups if g.strip())

        return cls(norm(owner), norm(contributor), norm(reader))

    def resolve(self, groups: Iterable[str]) -> str | None:
        member = {g.strip().casefold() for g in groups}
        for role, mapped in ((OWNER, self.owner), (CONTRIBUTOR, self.contributor), (READER, self.reader)):
            if member & mapped:
                return role
        return self.default()

    def default(self) -> str | None:
        """The role of a user no configured group maps (None = denied)."""
        if self.reader:
            return None
        if self.contributor:
            return READER
        return CONTRIBUTOR

    def for_local(self, stored_role: str) -> str | None:
        """A local user's role: the one set with `o16n admin user set-role`, else the default."""
        return stored_role if stored_role in PERMISSIONS else self.default()


def effective_role(principal: Principal) -> str:
    return principal.role if principal.role in PERMISSIONS else CONTRIBUTOR


def allowed(principal: Principal, action: Action) -> bool:
    return action in PERMISSIONS[effective_role(principal)]


def require(principal: Principal, action: Action) -> None:
    if not allowed(principal, action):
        raise Forbidden(f"the {effective_role(principal)} role may not {action.value}")


def can_manage(principal: Principal, owner: str) -> bool:
    """May `principal` update or delete a service published by `owner`?"""
    if allowed(principal, Action.MANAGE_ANY):
        return True
    return owner == principal.username and allowed(principal, Action.MANAGE_OWN)


def require_manage(principal: Principal, owner: str, what: str) -> None:
    if not can_manage(principal, owner):
        raise Forbidden(f"{what} is owned by a different user; only its owner can change it")
