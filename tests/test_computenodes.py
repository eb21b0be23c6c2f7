"""GET/POST/PUT/DELETE /computenodes: Owner only, entries validated (400 naming the entry), list kept in the store.

These run against the shared session servers; every test that changes the list puts the
original back before it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support import WebNode, wait_until
from tests.test_services import consume, expect_error, publish, user_headers

URL = "/computenodes"


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
