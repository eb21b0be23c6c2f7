"""bcrypt password hashing, run in an executor (bcrypt blocks for tens of milliseconds)."""

from __future__ import annotations

import asyncio
import re
import secrets
import string

import bcrypt

# Computed once so an unknown user costs the same time as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"o16n-no-such-user", bcrypt.gensalt(4)).decode()
_SYMBOLS = "~!@#$%^&()-_+=|<>\\/;:,."


async def hash_password(password: str, rounds: int) -> str:
    loop = asyncio.get_running_loop()
    digest = await loop.run_in_executor(None, _hash, password.encode(), rounds)
    return digest.decode()


def _hash(password: bytes, rounds: int) -> bytes:
    # bcrypt only reads 72 bytes; pre-hash longer passwords so no length limit applies.
    return bcrypt.hashpw(_prepare(password), bcrypt.gensalt(rounds))


def _prepare(password: bytes) -> bytes:
    if len(password) <= 72:
        return password
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(password).digest())


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant-ish time: an unknown user (None) still costs one bcrypt check."""
    loop = asyncio.get_running_loop()
    target = (password_hash or _DUMMY_HASH).encode()
    ok = await loop.run_in_executor(None, _check, password.encode(), target)
    return ok and password_hash is not None


def _check(password: bytes, target: bytes) -> bool:
    try:
        return bcrypt.checkpw(_prepare(password), target)
    except ValueError:
        return False


def password_problem(password: str) -> str | None:
    """None when `password` meets the rules (ML Server's, without its 16-character cap)."""
    if len(password) < 8:
        return "the password must have at least 8 characters"
    if len(password) > 1024:
        return "the password must have at most 1024 characters"
    checks = [
        (r"[A-Z]", "an upper-case letter"),
        (r"[a-z]", "a lower-case letter"),
        (r"[0-9]", "a digit"),
    ]
    for pattern, what in checks:
        if not re.search(pattern, password):
            return f"the password must contain {what}"
    if not any(c in _SYMBOLS or (not c.isalnum() and not c.isspace()) for c in password):
        return f"the password must contain a symbol such as {_SYMBOLS}"
    return None


def generate_password() -> str:
    """A random password that meets the rules."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(16))
    return core + secrets.choice(string.ascii_uppercase) + secrets.choice(string.digits) + "!a"
