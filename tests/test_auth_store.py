"""Refresh-token lifetimes, token verification and key rotation on the real store backends (SQLite, Postgres).

Expiry is tested by moving a token's timestamps into the past with SQL, not by waiting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.errors import Unauthorized
from webnode.auth.roles import CONTRIBUTOR, OWNER, READER, RoleMapping
from webnode.auth.tokens import SIGNING_KEYS, TokenService
from webnode.store.config import ConfigStore
from webnode.store.db import Database, open_database
from webnode.store.migrations import migrate
from webnode.store.tokens import RefreshTokenReused, RefreshTokenStore

DAY = 24 * 3600


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path, pg_dsn: str) -> AsyncIterator[Database]:
    url = pg_dsn if request.param == "postgres" else ""
    database = await open_database(url, tmp_path)
    await migrate(database)
    yield database
    await database.close()


def _store(db: Database) -> RefreshTokenStore:
    return RefreshTokenStore(db, idle_lifetime=14 * DAY, max_lifetime=90 * DAY)


async def _age(db: Database, chain: str, *, idle: float = 0, chain_age: float = 0) -> None:
    now = time.time()
    await db.execute(
        "UPDATE refresh_tokens SET last_used=$2, chain_started=$3 WHERE chain_id=$1", chain, now - idle, now - chain_age
    )


async def test_refresh_idle_for_14_days_expires(db: Database) -> None:
    store = _store(db)
    grant = await store.issue("idle-user")
    await _age(db, grant.chain_id, idle=13 * DAY)
    newer, _ = await store.rotate(grant.token)  # 13 days idle: still fine
    await _age(db, newer.chain_id, idle=14 * DAY + 60)
    with pytest.raises(Unauthorized):
        await store.rotate(newer.token)


async def test_chain_ends_after_90_days_even_when_used(db: Database) -> None:
    store = _store(db)
    grant = await store.issue("busy-user")
    await _age(db, grant.chain_id, chain_age=89 * DAY)
    newer, _ = await store.rotate(grant.token)
    await _age(db, newer.chain_id, chain_age=90 * DAY + 60)
    with pytest.raises(Unauthorized):
        await store.rotate(newer.token)


async def test_reuse_revokes_the_chain_and_tokens_are_stored_hashed(db: Database) -> None:
    store = _store(db)
    grant = await store.issue("victim")
    newer, _ = await store.rotate(grant.token)
    with pytest.raises(RefreshTokenReused) as reused:
        await store.rotate(grant.token)
    assert reused.value.chain_id == grant.chain_id and reused.value.username == "victim"
    with pytest.raises(Unauthorized):
        await store.rotate(newer.token)
    assert grant.chain_id in await store.revoked_chains_since(time.time() - 60)
    rows = await db.fetch("SELECT token_hash FROM refresh_tokens WHERE chain_id=$1", grant.chain_id)
    assert rows and all(r["token_hash"] not in (grant.token, newer.token) for r in rows)


async def test_revoke_user_ends_every_chain(db: Database) -> None:
    store = _store(db)
    first, second = await store.issue("leaver"), await store.issue("leaver")
    other = await store.issue("stayer")
    assert sorted(await store.revoke_user("leaver")) == sorted([first.chain_id, second.chain_id])
    for grant in (first, second):
        with pytest.raises(Unauthorized):
            await store.rotate(grant.token)
    await store.rotate(other.token)


async def test_key_rotation_keeps_old_tokens_valid(db: Database) -> None:
    config = ConfigStore(db)
    node_a = TokenService(issuer="o16n", audience="o16n", lifetime=3600)
    node_b = TokenService(issuer="o16n", audience="o16n", lifetime=3600)
    await node_a.load_keys(config)
    await node_b.load_keys(config)
    assert node_a.signing_kid == node_b.signing_kid  # one key shared through the store
    old_token, _ = node_a.issue("u", OWNER, "chain-1")
    old_kid = node_a.signing_kid
    new_kid = await node_a.rotate_keys(config)
    assert new_kid != old_kid and node_a.signing_kid == new_kid
    new_token, _ = node_a.issue("u", OWNER, "chain-1")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert not node_b.knows_kid(new_token)
    assert await node_b.reload(config)
    for service in (node_a, node_b):
        assert service.verify(old_token).username == "u"
        assert service.verify(new_token).username == "u"
    # Keys retired longer than a token lifetime ago are dropped at the next rotation.
    keys = await config.get(SIGNING_KEYS)
    for entry in keys:
        if entry["kid"] == old_kid:
            entry["retired"] = time.time() - 3600 - 120
    await config.set(SIGNING_KEYS, keys)
    await node_a.rotate_keys(config)
    assert old_kid not in {k["kid"] for k in await config.get(SIGNING_KEYS)}
    with pytest.raises(Unauthorized):
        node_a.verify(old_token)


async def test_expired_wrong_audience_and_revoked_tokens(db: Database) -> None:
    config = ConfigStore(db)
    expired = TokenService(issuer="o16n", audience="o16n", lifetime=-10)
    await expired.load_keys(config)
    token, _ = expired.issue("u", OWNER, "c")
    with pytest.raises(Unauthorized, match="expired"):
        expired.verify(token)
    other_audience = TokenService(issuer="o16n", audience="elsewhere", lifetime=3600)
    await other_audience.load_keys(config)
    token, _ = other_audience.issue("u", OWNER, "c")
    verifier = TokenService(issuer="o16n", audience="o16n", lifetime=3600)
    await verifier.load_keys(config)
    with pytest.raises(Unauthorized):
        verifier.verify(token)
    token, _ = verifier.issue("u", OWNER, "chain-x")
    assert verifier.verify(token).chain_id == "chain-x"
    verifier.revoke_chain("chain-x")
    with pytest.raises(Unauthorized):
        verifier.verify(token)  # also when the verification was cached


async def test_signing_key_file(db: Database, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "signing.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = ConfigStore(db)
    one = TokenService(issuer="o16n", audience="o16n", lifetime=3600, key_file=str(path))
    two = TokenService(issuer="o16n", audience="o16n", lifetime=3600, key_file=str(path))
    await one.load_keys(config)
    await two.load_keys(config)
    token, _ = one.issue("u", OWNER, "c")
    assert jwt.get_unverified_header(token)["kid"].startswith("file-")
    assert two.verify(token).username == "u"
    jwt.decode(token, key.public_key(), algorithms=["ES256"], audience="o16n")
    (tmp_path / "rsa.pem").write_text("not a key")
    with pytest.raises(ValueError, match="O16N_SIGNING_KEY_FILE"):
        TokenService(issuer="o16n", audience="o16n", lifetime=3600, key_file=str(tmp_path / "rsa.pem"))


def test_role_mapping_follows_ml_server() -> None:
    none = RoleMapping.from_lists([], [], [])
    assert none.resolve([]) == CONTRIBUTOR  # no roles configured
    owner_only = RoleMapping.from_lists(["Admins"], [], [])
    assert owner_only.resolve(["admins"]) == OWNER and owner_only.resolve(["x"]) == CONTRIBUTOR
    with_contributor = RoleMapping.from_lists(["Admins"], ["Devs"], [])
    assert with_contributor.resolve(["x"]) == READER and with_contributor.resolve(["Devs"]) == CONTRIBUTOR
    with_reader = RoleMapping.from_lists(["Admins"], ["Devs"], ["Apps"])
    assert with_reader.resolve(["x"]) is None  # Reader declared: unassigned users denied
    assert with_reader.resolve(["Apps", "Devs", "Admins"]) == OWNER  # the highest wins
    assert with_reader.for_local("") is None and with_reader.for_local(READER) == READER
    assert none.for_local("") == CONTRIBUTOR
