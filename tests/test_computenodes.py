"""GET/POST/PUT/DELETE /computenodes: Owner only, entries validated (400 naming the entry), list kept in the store.

These run against the shared session servers; every test that changes the list puts the
original back before it ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import Process, WebNode, free_port, start_compute_node, start_web_node, unique, wait_until
from tests.test_services import consume, expect_error, publish, user_headers

URL = "/computenodes"
HOSTS = Path("/etc/hosts")


async def _get(http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str]) -> list[str]:
    async with http.get(f"{server.url}{URL}", headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert set(body) == {"computeNodes"}
    nodes = body["computeNodes"]
    assert isinstance(nodes, list)
    return nodes


async def _send(
    http: aiohttp.ClientSession, server: WebNode, auth: dict[str, str], method: str, body: Any
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str | bytes) else {"json": body}
    headers = {**auth, "Content-Type": "application/json"}
    async with http.request(method, f"{server.url}{URL}", headers=headers, **kwargs) as resp:
        return resp.status, await resp.json()


@pytest.fixture
def other_user(server: WebNode) -> Any:
    """A factory: await other_user("Contributor" | "Reader") -> auth headers of a new user."""
    return lambda role: user_headers(server, role)


@pytest.fixture
async def original(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> AsyncIterator[list[str]]:
    before = await _get(http, server, auth)
    yield before
    status, body = await _send(http, server, auth, "POST", {"entries": before})
    assert status == 200, body


async def test_get_lists_the_seeded_node(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], compute_node: str
) -> None:
    assert await _get(http, server, auth) == [compute_node]


async def test_only_owners_may_see_or_change_the_list(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], other_user: Any, compute_node: str
) -> None:
    body = {"entries": ["http://10.9.9.9:12805"]}
    for method in ("GET", "POST", "PUT", "DELETE"):
        async with http.request(method, f"{server.url}{URL}", json=body) as resp:
            await expect_error(resp, 401)
    for role in ("Contributor", "Reader"):
        headers = await other_user(role)
        for method in ("GET", "POST", "PUT", "DELETE"):
            async with http.request(method, f"{server.url}{URL}", json=body, headers=headers) as resp:
                error = await expect_error(resp, 403)
                assert "compute nodes" in error["message"]
    assert await _get(http, server, auth) == [compute_node]  # nothing changed


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("http://10.0.300.1:12805", "above 255"),
        ("http://10.0.3-1.1:12805", "backwards"),
        ("http://10.0.1:12805", "four octets"),
        ("ftp://host:12805", "scheme"),
        ("http://host:99999", "port"),
        ("http://bad host:12805", "host name"),
        ("http://10.0-255.0-255.1:1", "at most"),
        ("", "non-empty"),
    ],
)
async def test_malformed_entries_are_400_naming_the_entry(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], entry: str, why: str, compute_node: str
) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, body = await _send(http, server, auth, method, {"entries": [compute_node, entry]})
        assert status == 400, body
        assert body["code"] == 400 and body["fields"] == "entries" and "Traceback" not in str(body)
        assert repr(entry) in body["message"] and why in body["message"], body
    assert await _get(http, server, auth) == [compute_node]


async def test_malformed_bodies_are_400(server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    bodies: list[Any] = [
        "not json",
        "[1, 2]",
        {"nodes": []},
        {"entries": "http://h:1"},
        {"entries": [5]},
        {"entries": None},
    ]
    for body in bodies:
        for method in ("POST", "PUT", "DELETE"):
            status, error = await _send(http, server, auth, method, body)
            assert status == 400, (method, body, error)
            assert error["code"] == 400 and isinstance(error["message"], str) and error["message"]
    for method in ("PUT", "DELETE"):
        status, error = await _send(http, server, auth, method, {"entries": []})
        assert status == 400 and "at least one" in error["message"], error


async def test_add_remove_and_replace(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], original: list[str]
) -> None:
    # PUT adds (normalised: default scheme and port; duplicates once), ranges stay one entry.
    status, body = await _send(http, server, auth, "PUT", {"entries": ["http://10.0.1-3.1-2:12805", "10.1.1.1"]})
    assert status == 200, body
    expected = [*original, "http://10.0.1-3.1-2:12805", "http://10.1.1.1:12805"]
    assert body == {"computeNodes": expected}
    status, body = await _send(http, server, auth, "PUT", {"entries": ["HTTP://10.1.1.1:12805/"]})
    assert status == 200 and body["computeNodes"] == expected
    assert await _get(http, server, auth) == expected

    # DELETE removes; an entry not in the list is 404 naming it, and nothing is removed.
    status, error = await _send(
        http, server, auth, "DELETE", {"entries": ["http://10.1.1.1:12805", "http://10.2.2.2:1"]}
    )
    assert status == 404 and "http://10.2.2.2:1" in error["message"] and error["code"] == 404, error
    status, body = await _send(http, server, auth, "DELETE", {"entries": ["http://10.0.1-3.1-2:12805", "10.1.1.1"]})
    assert status == 200 and body["computeNodes"] == original, body

    # POST replaces the whole list (one string may hold several comma-separated entries).
    status, body = await _send(http, server, auth, "POST", {"entries": [f"{original[0]},http://localhost:1"]})
    assert status == 200 and body["computeNodes"] == [original[0], "http://localhost:1"], body


async def test_the_web_node_routes_by_the_list(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], original: list[str]
) -> None:
    name = await publish(
        http, server, auth, {"code": "y = x * 2", "runtimeType": "Python",
                             "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
                             "outputParameterDefinitions": [{"name": "y", "type": "numeric"}]},
    )  # fmt: skip
    # An empty list: nothing to route to -> 503 JSON, and /status says the backends fail.
    status, body = await _send(http, server, auth, "POST", {"entries": []})
    assert status == 200 and body == {"computeNodes": []}
    async with http.post(f"{server.url}/api/{name}/1.0", json={"x": 2}, headers=auth) as resp:
        await expect_error(resp, 503)
    async with http.get(f"{server.url}/status", headers=auth) as resp:
        assert (await resp.json())["components"]["backends"]["statusCode"] == "fail"

    # A node that does not answer next to the real one: /status warns about it; requests still succeed.
    status, body = await _send(http, server, auth, "POST", {"entries": [*original, "http://127.0.0.1:1"]})
    assert status == 200, body

    async def warns() -> bool:
        async with http.get(f"{server.url}/status", headers=auth) as resp:
            backends = (await resp.json())["components"]["backends"]
        return bool(
            backends["statusCode"] == "warn" and backends["components"]["http://127.0.0.1:1"]["statusCode"] == "fail"
        )

    await wait_until(warns, timeout=10, what="/status warning about the dead node")
    for x in range(10):
        assert (await consume(http, server, auth, name, {"x": x}))["outputParameters"]["y"] == 2 * x


async def test_ranges_and_names_expand_to_nodes(
    server: WebNode, http: aiohttp.ClientSession, auth: dict[str, str], original: list[str]
) -> None:
    """One range entry is three nodes in /status; a name resolving to one address keeps its name."""
    status, body = await _send(http, server, auth, "PUT", {"entries": ["http://127.0.0.250-252:1", "localhost:2"]})
    assert status == 200 and body["computeNodes"] == [*original, "http://127.0.0.250-252:1", "http://localhost:2"]
    expected = {*original, "http://127.0.0.250:1", "http://127.0.0.251:1", "http://127.0.0.252:1", "http://localhost:2"}

    async def expanded() -> bool:
        async with http.get(f"{server.url}/status", headers=auth) as resp:
            nodes = (await resp.json())["components"]["backends"]["components"] or {}
        return set(nodes) == expected

    await wait_until(expanded, timeout=10, what="the range expanded in /status")


# ---------------------------------------------------------------- a name for several compute nodes


def _without(text: bytes, line: bytes) -> bytes:
    """`text` without the last whole line equal to `line` (a line of ours, appended at the end)."""
    at = text.rfind(line)
    while at > 0 and text[at - 1 : at] != b"\n":
        at = text.rfind(line, 0, at)
    return text if at < 0 else text[:at] + text[at + len(line) :]


@contextlib.contextmanager
def hosts_lines(lines: list[str]) -> Iterator[Callable[[str, bool], None]]:
    """Append `lines` to /etc/hosts; yields `edit(line, present)` to take one out or put it back. On
    exit, the lines still there are removed: the file is byte-identical to what it was (rewritten in place)."""
    assert os.geteuid() == 0, "this test edits /etc/hosts: run it as root (as make test and CI do)"
    ours = [line.encode() + b"\n" for line in lines]
    before = HOSTS.read_bytes()
    separator = b"\n" if before and not before.endswith(b"\n") else b""

    def edit(line: str, present: bool) -> None:
        text = _without(HOSTS.read_bytes(), line.encode() + b"\n")
        HOSTS.write_bytes(text + line.encode() + b"\n" if present else text)

    with HOSTS.open("ab") as handle:
        handle.write(separator + b"".join(ours))
    try:
        yield edit
    finally:
        text = HOSTS.read_bytes()
        for line in reversed(ours):
            text = _without(text, line)
        if separator and text.endswith(before + separator):
            text = text[: -len(separator)]
        HOSTS.write_bytes(text)


def addresses(name: str) -> set[str]:
    return {str(info[4][0]) for info in socket.getaddrinfo(name, 1, socket.AF_INET, socket.SOCK_STREAM)}


WHO = {
    "code": "import os\nnode = os.getppid()",  # a shell's parent is its compute node
    "runtimeType": "Python",
    "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
    "outputParameterDefinitions": [{"name": "node", "type": "numeric"}],
}


async def test_a_name_resolving_to_two_addresses_is_two_nodes_and_follows_dns(
    tmp_path: Path, http: aiohttp.ClientSession, processes: list[Process]
) -> None:
    """What `docker compose up --scale computenode=2` gives: one name, two addresses, one port.

    Both nodes appear in /status and serve requests; when the name loses an address, the periodic
    re-resolution drops that node; when it gains it back, a PUT of the same entry re-resolves at once.
    """
    name = unique("o16n-scale-")
    lines = [f"127.0.0.2 {name}", f"127.0.0.3 {name}"]
    port = free_port("127.0.0.2")
    nodes: dict[str, Process] = {}
    for host in ("127.0.0.2", "127.0.0.3"):
        process, _ = await start_compute_node(tmp_path / host, host=host, port=port, O16N_R_ENABLED="false")
        processes.append(process)
        nodes[host] = process
    web = await start_web_node(tmp_path / "web", [], O16N_COMPUTE_NODES_RELOAD_INTERVAL="0.5")
    processes.append(web.process)
    auth = await web.headers(http)
    entry = f"http://{name}:{port}"
    pids = {process.popen.pid: host for host, process in nodes.items()}

    async def backends() -> set[str]:
        async with http.get(f"{web.url}/status", headers=auth) as resp:
            body = await resp.json()
        parts = body["components"]["backends"]["components"] or {}
        # "warn" only says R is disabled on these nodes: they serve Python.
        return {uri for uri, part in parts.items() if part["statusCode"] in ("pass", "warn")}

    async def served_by(service: str, hosts: set[str]) -> bool:
        """True once requests have reached every node in `hosts` (and no other), within 200 requests."""
        seen: set[str] = set()
        for x in range(200):
            seen.add(pids[int((await consume(http, web, auth, service, {"x": x}))["outputParameters"]["node"])])
            assert seen <= hosts, f"served by {seen}, expected only {hosts}"
            if seen == hosts:
                return True
        return False

    with hosts_lines(lines) as edit:
        assert addresses(name) == {"127.0.0.2", "127.0.0.3"}, "getaddrinfo must return every address of the name"
        status, body = await _send(http, web, auth, "PUT", {"entries": [entry]})
        assert status == 200 and body == {"computeNodes": [entry]}, body
        both = {f"http://127.0.0.2:{port}", f"http://127.0.0.3:{port}"}

        async def both_up() -> bool:
            return await backends() == both

        await wait_until(both_up, timeout=20, what="both addresses of the name as healthy nodes in /status")
        service = await publish(http, web, auth, WHO)
        assert await served_by(service, {"127.0.0.2", "127.0.0.3"})

        # Scale down: the name loses 127.0.0.3 (its node still runs): the periodic re-resolution drops it.
        edit(lines[1], False)
        assert addresses(name) == {"127.0.0.2"}

        async def one_left() -> bool:
            return await backends() == {entry}  # one address: the node keeps the name

        await wait_until(one_left, timeout=20, what="the node that lost its address dropped from /status")
        assert await served_by(service, {"127.0.0.2"})
        assert nodes["127.0.0.3"].alive()

        # Scale up again: a PUT of the same entry re-resolves the name at once.
        edit(lines[1], True)
        status, body = await _send(http, web, auth, "PUT", {"entries": [entry]})
        assert status == 200 and body == {"computeNodes": [entry]}, body
        async with http.get(f"{web.url}/status", headers=auth) as resp:
            assert set((await resp.json())["components"]["backends"]["components"]) == both
        await wait_until(both_up, timeout=20, what="both nodes healthy again")
        assert await served_by(service, {"127.0.0.2", "127.0.0.3"})
    assert name not in HOSTS.read_text()
