"""Large payloads through real nodes: a 200 MB snapshot loaded on another compute node, a 120 MB file.

Also checks that the web node streams them: its peak memory grows far less than the payload.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import REDIS_URL, Process, WebNode, start_compute_node, start_web_node
from tests.test_foundation import assert_error
from tests.test_sessions import execute, new_session

MB = 1024 * 1024


def peak_rss(process: Process) -> int:
    """VmHWM (peak resident memory) of a process, in bytes."""
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
async def second_node(
    tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, cluster_server: WebNode
) -> AsyncIterator[WebNode]:
    """Another compute node with its own web node on the same central store (Postgres + Redis)."""
    workdir = tmp_path_factory.mktemp("second")
    compute, uri = await start_compute_node(workdir / "compute", O16N_R_ENABLED="false")
    web = await start_web_node(workdir / "web", [uri], database_url=pg_dsn, redis_url=REDIS_URL)
    yield web
    web.process.stop()
    compute.stop()


async def test_200mb_snapshot_round_trip_across_compute_nodes(
    cluster_server: WebNode, second_node: WebNode, http: aiohttp.ClientSession
) -> None:
    server = cluster_server
    auth = await server.headers(http)
    sid = await new_session(server, http, auth)
    make = (
        "import os, hashlib\n"
        f"blob = os.urandom({100 * MB})\n"
        f"open('data.bin', 'wb').write(os.urandom({100 * MB}))\n"
        "digest = hashlib.sha256(blob).hexdigest()\n"
        "file_digest = hashlib.sha256(open('data.bin', 'rb').read()).hexdigest()\n"
    )
    made = await execute(server, http, auth, sid, make, outputParameters=["digest", "file_digest"])
    digests = {o["name"]: o["value"] for o in made["outputParameters"]}  # type: ignore[union-attr]
    before = peak_rss(server.process)

    started = time.perf_counter()
    async with http.post(f"{server.url}/sessions/{sid}/snapshot", headers=auth) as resp:
        assert resp.status == 201, await resp.text()
        snap = (await resp.json())["snapshotId"]
    create_seconds = time.perf_counter() - started
    async with http.delete(f"{server.url}/sessions/{sid}", headers=auth) as resp:
        assert resp.status == 200

    async with http.get(f"{server.url}/snapshots", headers=auth) as resp:
        size = {s["id"]: s["contentSize"] for s in await resp.json()}[snap]
    assert size > 200 * MB
    got, sha = 0, hashlib.sha256()
    started = time.perf_counter()
    async with http.get(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
        async for chunk in resp.content.iter_chunked(MB):
            got += len(chunk)
            sha.update(chunk)
    download_seconds = time.perf_counter() - started
    assert got == size

    # The other web node places the new session on the other compute node, which has never
    # seen this snapshot: it fetches it from the central store.
    other_auth = await second_node.headers(http)
    started = time.perf_counter()
    fresh = await new_session(second_node, http, other_auth, snapshotId=snap)
    load_seconds = time.perf_counter() - started
    try:
        check = (
            "import hashlib\n"
            "digest = hashlib.sha256(blob).hexdigest()\n"
            "file_digest = hashlib.sha256(open('data.bin', 'rb').read()).hexdigest()\n"
        )
        result = await execute(second_node, http, other_auth, fresh, check, outputParameters=["digest", "file_digest"])
        assert {o["name"]: o["value"] for o in result["outputParameters"]} == digests  # type: ignore[union-attr]
    finally:
        async with http.delete(f"{second_node.url}/sessions/{fresh}", headers=other_auth):
            pass
    grown = peak_rss(server.process) - before
    assert grown < 100 * MB, f"the web node's peak memory grew by {grown / MB:.0f} MB"
    print(
        f"\nsnapshot {size / MB:.0f} MB: create {create_seconds:.2f} s, download {download_seconds:.2f} s, "
        f"new session on another node {load_seconds:.2f} s; web node peak memory +{grown / MB:.0f} MB"
    )
    async with http.delete(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
        assert resp.status == 200
    async with http.get(f"{server.url}/snapshots/{snap}", headers=auth) as resp:
        assert resp.status == 404
        assert_error(await resp.json(), 404)


async def test_120mb_file_streams_through(onebox_server: WebNode, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    server = onebox_server
    auth = await server.headers(http)
    sid = await new_session(server, http, auth)
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        for _ in range(120):
            f.write(os.urandom(MB))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    before = peak_rss(server.process)
    try:
        started = time.perf_counter()
        with source.open("rb") as f:
            form = aiohttp.FormData()
            form.add_field("file", f, filename="big.bin", content_type="application/octet-stream")
            async with http.post(f"{server.url}/sessions/{sid}/files", data=form, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
        upload_seconds = time.perf_counter() - started
        result = await execute(
            server,
            http,
            auth,
            sid,
            "import hashlib\nd = hashlib.sha256(open('big.bin', 'rb').read()).hexdigest()",
            outputParameters=["d"],
        )
        assert result["outputParameters"] == [{"name": "d", "value": expected}]
        sha, started = hashlib.sha256(), time.perf_counter()
        async with http.get(f"{server.url}/sessions/{sid}/files/big.bin", headers=auth) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(MB):
                sha.update(chunk)
        download_seconds = time.perf_counter() - started
        assert sha.hexdigest() == expected
        grown = peak_rss(server.process) - before
        assert grown < 60 * MB, f"the web node's peak memory grew by {grown / MB:.0f} MB"
        print(
            f"\n120 MB file: upload {upload_seconds:.2f} s, download {download_seconds:.2f} s; "
            f"web node +{grown / MB:.0f} MB"
        )
    finally:
        async with http.delete(f"{server.url}/sessions/{sid}/force", headers=auth):
            pass


async def test_snapshot_store_copy_and_stale_cleanup(tmp_path: Path) -> None:
    """The store contract services rely on (copy_snapshot), and removal of abandoned writes."""
    from common.errors import NotFound
    from webnode.store.db import open_database
    from webnode.store.migrations import migrate
    from webnode.store.snapshots import SnapshotRecord, SnapshotStore

    db = await open_database("", tmp_path)
    try:
        await migrate(db)
        store = SnapshotStore(db)
        record = SnapshotRecord(id="s1", owner="ann", name="n", runtime="Python", content_size=0, chunk_count=0)
        await store.begin(record)
        for seq, data in enumerate((b"ab", b"cd")):
            await store.put_chunk("s1", seq, data)
        assert await store.list("ann") == []  # not listed while pending
        with pytest.raises(NotFound):
            await store.get("s1")
        await store.complete("s1", 4, 2)
        assert [r.id for r in await store.list("ann")] == ["s1"]

        copy = await store.copy_snapshot("s1", "s1-copy", owner="service:x")
        await store.delete("s1")
        assert copy.owner == "service:x" and copy.content_size == 4
        assert await store.read_content("s1-copy") == b"abcd"

        stale = SnapshotRecord(
            id="s2", owner="ann", name="", runtime="R", content_size=0, chunk_count=0, created_at=1.0
        )
        await store.begin(stale)
        await store.put_chunk("s2", 0, b"x")
        assert await store.delete_stale(time.time() - 60) == 1
        assert await db.fetch("SELECT seq FROM snapshot_chunks WHERE snapshot_id = $1", "s2") == []
        assert await store.delete_stale(time.time() - 60) == 0
    finally:
        await db.close()
