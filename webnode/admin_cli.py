"""`o16n admin ...`: manage local users and signing keys, read the audit log.

Works directly on the central store named by the usual settings (O16N_DATABASE_URL or the
embedded store in O16N_DATA_DIR), so it runs on any machine that reaches the store. Web
nodes see changes through the coordination backend when O16N_REDIS_URL is set, and
otherwise within O16N_AUTH_SYNC_INTERVAL seconds. Every change is written to the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
import uuid
from typing import TextIO

from common.errors import AppError, InvalidInput
from common.settings import SettingsError, load
from webnode.auth.audit import Auditor
from webnode.auth.channels import KEYS, REVOCATIONS
from webnode.auth.passwords import hash_password, password_problem
from webnode.coord.base import Coordinator
from webnode.coord.memory import MemoryCoordinator
from webnode.settings import WebNodeSettings
from webnode.store.audit import AuditStore
from webnode.store.config import ConfigStore
from webnode.store.db import Database, open_database
from webnode.store.migrations import migrate
from webnode.store.tokens import RefreshTokenStore
from webnode.store.users import UserStore

COMMANDS = ("user", "key", "audit")
ADMIN = "admin"  # the local admin (webnode.auth.logins.ADMIN), always Owner
ROLES = ("Owner", "Contributor", "Reader")  # webnode.auth.roles.ROLES


def add_commands(what: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `user`, `key` and `audit` under `o16n admin`."""
    user = what.add_parser("user", help="local users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="create a local user")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default=None, help="Owner, Contributor or Reader (default: by rules)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.add_parser("list", help="list users with their role and source")
    setpw = user.add_parser("set-password", help="change a local user's password (ends their logins)")
    setpw.add_argument("username")
    setpw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    setrole = user.add_parser("set-role", help="set a local user's role ('default' = by the role rules)")
    setrole.add_argument("username")
    setrole.add_argument("role", choices=[*ROLES, "default"])
    remove = user.add_parser("remove", help="remove a user (ends their logins)")
    remove.add_argument("username")
    key = what.add_parser("key", help="token signing keys").add_subparsers(dest="key_command", required=True)
    key.add_parser("rotate", help="a new key signs from now on; older keys verify until their tokens expire")
    audit = what.add_parser("audit", help="print the newest audit log entries")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--action", default="", help="only this action (login, refresh, revoke, denied, user.add, ...)")


def run(args: argparse.Namespace) -> int:
    from common import eventloop

    try:
        settings = load(WebNodeSettings)
    except SettingsError as exc:
        print(f"o16n admin: {exc}", file=sys.stderr)
        return 2
    try:
        return eventloop.run(_run(args, settings, sys.stdin, sys.stdout))
    except AppError as exc:
        print(f"o16n admin: {exc.message}", file=sys.stderr)
        return 1


def _read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
    elif stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            raise InvalidInput("the passwords differ")
    else:
        raise InvalidInput("give the password on standard input with --password-stdin")
    problem = password_problem(password)
    if problem:
        raise InvalidInput(problem)
    return password


class _Admin:
    """One command's resources: the store, the audit log, and the coordination backend."""

    def __init__(self, db: Database, settings: WebNodeSettings, coordinator: Coordinator) -> None:
        self.db = db
        self.settings = settings
        self.users = UserStore(db)
        self.coordinator = coordinator
        self.refresh = RefreshTokenStore(
            db,
            idle_lifetime=settings.refresh_token_idle_lifetime,
            max_lifetime=settings.refresh_token_max_lifetime,
        )
        self._auditor = Auditor(AuditStore(db))
        self._actor = f"cli:{getpass.getuser()}"

    async def audit(self, action: str, target: str, detail: str = "") -> None:
        await self._auditor.record(
            actor=self._actor,
            action=action,
            outcome="success",
            target=target,
            address="command line",
            request_id=uuid.uuid4().hex,
            detail=detail,
        )

    async def end_logins(self, username: str) -> int:
        chains = await self.refresh.revoke_user(username)
        for chain in chains:
            await self.coordinator.publish(REVOCATIONS, chain)
        return len(chains)


async def _run(args: argparse.Namespace, settings: WebNodeSettings, stdin: TextIO, stdout: TextIO) -> int:
    db = await open_database(settings.database_url, settings.data_dir)
    coordinator: Coordinator = MemoryCoordinator()
    if settings.redis_url:
        from webnode.coord.redis import RedisCoordinator

        coordinator = RedisCoordinator(settings.redis_url, settings.redis_prefix)
    try:
        await migrate(db)
        admin = _Admin(db, settings, coordinator)
        if args.admin == "user":
            return await _user(args, admin, stdin, stdout)
        if args.admin == "key":
            return await _rotate(admin, stdout)
        return await _audit(args, admin, stdout)
    finally:
        await coordinator.close()
        await db.close()


async def _user(args: argparse.Namespace, admin: _Admin, stdin: TextIO, stdout: TextIO) -> int:
    command, rounds = args.user_command, admin.settings.bcrypt_rounds
    if command == "list":
        for user in await admin.users.list():
            role = "Owner" if user.username == ADMIN else (user.role or "(default)")
            print(f"{user.username}\t{role}\t{user.source}", file=stdout)
        return 0
    name = args.username
    if command == "add":
        password = _read_password(args, stdin)
        await admin.users.create(name, await hash_password(password, rounds), args.role or "")
        await admin.audit("user.add", name, f"role {args.role or '(default)'}")
        print(f"added user '{name}'", file=stdout)
    elif command == "set-password":
        found = await admin.users.get(name)
        if found is None or found.source != "local":
            raise InvalidInput(f"no local user '{name}'")
        password = _read_password(args, stdin)
        await admin.users.set_password(name, await hash_password(password, rounds))
        ended = await admin.end_logins(name)
        await admin.audit("user.set-password", name, f"{ended} login(s) ended")
        print(f"changed the password of '{name}'", file=stdout)
    elif command == "set-role":
        if name == ADMIN:
            raise InvalidInput("the local admin is always Owner")
        role = "" if args.role == "default" else args.role
        await admin.users.set_role(name, role)
        await admin.audit("user.set-role", name, f"role {args.role}")
        print(f"'{name}' now has the role {args.role} (from their next login or token refresh)", file=stdout)
    elif command == "remove":
        if name == ADMIN:
            raise InvalidInput("the local admin cannot be removed")
        await admin.users.remove(name)
        ended = await admin.end_logins(name)
        await admin.audit("user.remove", name, f"{ended} login(s) ended")
        print(f"removed user '{name}'", file=stdout)
    return 0


async def _rotate(admin: _Admin, stdout: TextIO) -> int:
    from webnode.auth.tokens import TokenService

    settings = admin.settings
    tokens = TokenService(
        issuer=settings.token_issuer, audience=settings.token_audience, lifetime=settings.access_token_lifetime
    )
    config = ConfigStore(admin.db)
    await tokens.load_keys(config)
    kid = await tokens.rotate_keys(config)
    await admin.coordinator.publish(KEYS, kid)
    await admin.audit("key.rotate", kid)
    print(f"new signing key {kid}", file=stdout)
    if settings.signing_key_file:
        print("note: O16N_SIGNING_KEY_FILE is set, so web nodes keep signing with that file's key", file=stdout)
    return 0


async def _audit(args: argparse.Namespace, admin: _Admin, stdout: TextIO) -> int:
    for entry in await AuditStore(admin.db).recent(max(1, args.limit), args.action):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.at))
        fields = [stamp, entry.actor or "-", entry.action, entry.target or "-", entry.outcome]
        fields += [entry.address or "-", entry.request_id or "-", entry.detail]
        print("\t".join(fields), file=stdout)
    return 0
