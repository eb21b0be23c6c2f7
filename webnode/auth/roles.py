"""Roles and the one permission table every handler consults (semantics §5)."""

from __future__ import annotations

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
