"""Password logins (POST /login): LDAP when enabled, local users otherwise, throttled.

ML Server disables the local `admin` login once LDAP or Azure AD is enabled; o16n does
the same for every local user unless O16N_LOCAL_LOGIN_WITH_EXTERNAL is true. An unknown
user and a wrong password give the same 401 and cost the same bcrypt check.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import Forbidden, Unauthorized
from webnode.auth.ldap import LdapAuthenticator
from webnode.auth.passwords import verify_password
from webnode.auth.roles import OWNER, RoleMapping
from webnode.auth.throttle import LoginThrottle
from webnode.store.users import LOCAL, UserStore

ADMIN = "admin"
LDAP = "ldap"
INVALID = "invalid user name or password"


@dataclass(frozen=True)
class Identity:
    username: str
    role: str
    source: str


class NoRole(Forbidden):
    """Authenticated, but no role applies (a Reader group is declared and none maps the user)."""

    def __init__(self, username: str) -> None:
        super().__init__(f"'{username}' has no role on this server (no mapped group)")
        self.username = username


class PasswordLogins:
    def __init__(
        self,
        users: UserStore,
        mapping: RoleMapping,
        throttle: LoginThrottle,
        *,
        bcrypt_rounds: int,
        ldap: LdapAuthenticator | None = None,
        local_enabled: bool = True,
    ) -> None:
        self._users = users
        self._mapping = mapping
        self._throttle = throttle
        self._rounds = bcrypt_rounds
        self._ldap = ldap
        self._local_enabled = local_enabled

    async def login(self, username: str, password: str, address: str) -> Identity:
        await self._throttle.attempt(username, address)
        try:
            identity = await self._check(username, password)
        except Unauthorized:
            await self._throttle.failed(username, address)
            raise
        await self._throttle.succeeded(username, address)
        if not identity.role:
            raise NoRole(identity.username)
        return identity

    async def _check(self, username: str, password: str) -> Identity:
        if self._ldap is not None:
            found = await self._ldap.authenticate(username, password)
            if found is not None:
                role = self._mapping.resolve(found.groups) or ""
                await self._users.remember_external(found.username, role, LDAP)
                return Identity(found.username, role, LDAP)
        user = await self._users.get(username) if self._local_enabled else None
        local = user is not None and user.source == LOCAL
        if not await verify_password(password, user.password_hash if user and local else None, self._rounds):
            raise Unauthorized(INVALID)
        assert user is not None
        return Identity(user.username, self.local_role(user.username, user.role) or "", LOCAL)

    def local_role(self, username: str, stored_role: str) -> str | None:
        return OWNER if username == ADMIN else self._mapping.for_local(stored_role)

    async def refreshed_role(self, username: str, stored_role: str, source: str) -> str | None:
        """The role a refreshed login gets now; None ends the login.

        A directory user is looked up again (gone from the directory, or LDAP disabled since:
        None) and their groups mapped again; a local user gets the role stored now.
        """
        if source == LOCAL:
            return self.local_role(username, stored_role) if self._local_enabled else None
        if source != LDAP or self._ldap is None:
            return None
        found = await self._ldap.lookup(username)
        if found is None:
            return None
        role = self._mapping.resolve(found.groups)
        await self._users.remember_external(found.username, role or "", LDAP)
        return role
