"""bcrypt password hashing, run in an executor (bcrypt blocks for tens of milliseconds)."""

from __future__ import annotations

import asyncio
import re
import secrets
import string

import bcrypt

# One per work factor, so an unknown user costs the same time as a wrong password.
_DUMMY_HASHES: dict[int, str] = {}
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


async def verify_password(password: str, password_hash: str | None, rounds: int = 12) -> bool:
    """Constant-ish time: an unknown user (None) still costs one bcrypt check at `rounds`."""
    loop = asyncio.get_running_loop()
    if not password_hash:
        dummy = await dummy_hash(rounds)
        await loop.run_in_executor(None, _check, password.encode(), dummy.encode())
        return False
    return await loop.run_in_executor(None, _check, password.encode(), password_hash.encode())


async def dummy_hash(rounds: int) -> str:
    """The hash checked for unknown users (made at startup, so the first one is not slower)."""
    dummy = _DUMMY_HASHES.get(rounds)
    if dummy is None:
        dummy = _DUMMY_HASHES[rounds] = await hash_password(secrets.token_urlsafe(16), rounds)
    return dummy


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
