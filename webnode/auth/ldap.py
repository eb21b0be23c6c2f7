"""LDAP / Active Directory login (ldap3, blocking, so it runs in an executor).

Bind as the query user, find the user with the search filter, bind as the user with the
given password, then read the user's groups (the groups whose entries name the user, and
any memberOf values) so the role mapping can apply.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():  # ldap3 uses names pyasn1 deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

from common.errors import AppError, Unavailable
from webnode.settings import WebNodeSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirectoryUser:
    username: str
    dn: str
    groups: tuple[str, ...]


class LdapAuthenticator:
    def __init__(self, settings: WebNodeSettings) -> None:
        self._settings = settings
        tls = None
        if settings.ldap_use_ldaps:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ldap_ca_file or None)
        port = settings.ldap_port or (636 if settings.ldap_use_ldaps else 389)
        self._server = ldap3.Server(
            settings.ldap_host,
            port=port,
            use_ssl=settings.ldap_use_ldaps,
            tls=tls,
            connect_timeout=settings.ldap_timeout,
            get_info=ldap3.NONE,
        )

    async def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The directory user when `password` is right; None when the user or password is wrong."""
        if not password:
            return None  # an empty password would be an unauthenticated bind, which "succeeds"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._authenticate, username, password)

    async def lookup(self, name: str) -> DirectoryUser | None:
        """The directory user named `name` in o16n (no password: a token refresh re-reads the groups)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._lookup, name)

    def _lookup(self, name: str) -> DirectoryUser | None:
        settings = self._settings
        attribute = settings.ldap_unique_user_identifier_attribute_name
        search_filter = f"({attribute}={escape_filter_chars(name)})" if attribute else None
        try:
            query = self._connection(settings.ldap_query_user_dn or None, settings.ldap_query_user_password or None)
            if not query.bind():
                raise Unavailable("the directory (LDAP) refused the query user")
            try:
                entry = self._find_user(query, name, search_filter)
                if entry is None:
                    return None
                dn, found, member_of = entry
                return DirectoryUser(found, dn, self._groups(query, dn, name, member_of))
            finally:
                query.unbind()
        except AppError:
            raise
        except Exception as exc:
            logger.error("LDAP error: %s: %s", type(exc).__name__, exc)
            raise Unavailable(f"the directory (LDAP) is unavailable: {type(exc).__name__}") from None

    def _connection(self, user: str | None, password: str | None) -> ldap3.Connection:
        return ldap3.Connection(
            self._server,
            user=user,
            password=password,
            receive_timeout=max(1, int(self._settings.ldap_timeout)),
            raise_exceptions=False,
        )

    def _authenticate(self, username: str, password: str) -> DirectoryUser | None:
        settings = self._settings
        try:
            query = self._connection(settings.ldap_query_user_dn or None, settings.ldap_query_user_password or None)
            if not query.bind():
                logger.error("LDAP query user bind failed: %s", query.result.get("description"))
                raise Unavailable("the directory (LDAP) refused the query user")
            try:
                entry = self._find_user(query, username)
                if entry is None:
                    # Bind anyway (as an entry that does not exist), so an unknown user costs
                    # about what a wrong password costs.
                    self._connection(f"cn=o16n-no-such-user,{settings.ldap_search_base}", password).bind()
                    return None
                dn, name, member_of = entry
                user_conn = self._connection(dn, password)
                if not user_conn.bind():
                    return None
                user_conn.unbind()
                return DirectoryUser(name, dn, self._groups(query, dn, username, member_of))
            finally:
                query.unbind()
        except AppError:
            raise
        except Exception as exc:  # ldap3 raises LDAPException, OSError and others on a broken directory
            logger.error("LDAP error: %s: %s", type(exc).__name__, exc)
            raise Unavailable(f"the directory (LDAP) is unavailable: {type(exc).__name__}") from None

    def _find_user(
        self, query: ldap3.Connection, username: str, search_filter: str | None = None
    ) -> tuple[str, str, list[str]] | None:
        settings = self._settings
        attribute = settings.ldap_unique_user_identifier_attribute_name
        if search_filter is None:
            search_filter = settings.ldap_search_filter.replace("{0}", escape_filter_chars(username))
        query.search(
            settings.ldap_search_base,
            search_filter,
            search_scope=ldap3.SUBTREE,
            attributes=[attribute, "memberOf"] if attribute else ["memberOf"],
            size_limit=2,
        )
        entries = [e for e in query.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            return None  # none, or ambiguous
        entry = entries[0]
        name = username
        if attribute:
            value = entry.get("attributes", {}).get(attribute)
            if isinstance(value, list):
                value = value[0] if value else None
            if value:
                name = str(value)
        member_of = [str(v) for v in entry.get("attributes", {}).get("memberOf", []) or []]
        return str(entry["dn"]), name, member_of

    def _groups(self, query: ldap3.Connection, dn: str, username: str, member_of: list[str]) -> tuple[str, ...]:
        settings = self._settings
        groups = {_cn(value) for value in member_of}
        search_filter = settings.ldap_group_search_filter.replace("{dn}", escape_filter_chars(dn)).replace(
            "{0}", escape_filter_chars(username)
        )
        query.search(
            settings.ldap_group_search_base or settings.ldap_search_base,
            search_filter,
            search_scope=ldap3.SUBTREE,
            attributes=["cn"],
        )
        for entry in query.response or []:
            if entry.get("type") != "searchResEntry":
                continue
            cn = entry.get("attributes", {}).get("cn")
            for value in cn if isinstance(cn, list) else [cn]:
                if value:
                    groups.add(str(value))
        return tuple(sorted(g for g in groups if g))


def _cn(dn: str) -> str:
    """The group name ML Server compares: the first CN of a DN, without `CN=`."""
    try:
        parts = parse_dn(dn)
    except LDAPException:
        return dn
    for attribute, value, _ in parts:
        if attribute.lower() == "cn":
            return str(value)
    return dn
