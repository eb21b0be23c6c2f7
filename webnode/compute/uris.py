"""Compute node entries as ML Server writes them, and the node URIs they stand for.

An entry is a URI (`http://10.0.0.4:12805`, `host:12805`), an IPv4 range where any octet
may be `a-b` (`http://10.0.1-3.1-2:12805` is six hosts), or a DNS name that may resolve to
several addresses (what `docker compose --scale` or a Kubernetes headless Service gives).
`parse` validates and normalises an entry (400 naming it when malformed); `expand` turns
entries into node URIs, resolving names without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from common.errors import InvalidInput

DEFAULT_PORT = 12805
MAX_HOSTS_PER_ENTRY = 1024
SCHEMES = ("http", "https", "grpc")
_ENTRY = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[^\]]*\]|[^:/\[\]]+)(?::(?P<port>[^/]*))?/?$"
)
_OCTET = re.compile(r"^(\d{1,3})(?:-(\d{1,3}))?$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Entry:
    """One validated entry; `text` is its normal form (lower-case, explicit port)."""

    scheme: str
    host: str
    port: int
    octets: tuple[tuple[int, int], ...] | None  # an IPv4 address or range, else None

    @property
    def text(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def is_name(self) -> bool:
        return self.octets is None and not self.host.startswith("[")

    def hosts(self) -> list[str]:
        """The literal hosts of an address or range (a name is returned as is)."""
        if self.octets is None:
            return [self.host]
        ranges = [range(low, high + 1) for low, high in self.octets]
        return [".".join(map(str, combo)) for combo in itertools.product(*ranges)]


def _bad(entry: str, why: str) -> InvalidInput:
    return InvalidInput(f"invalid compute node entry {entry!r}: {why}", field="entries")


def _octets(entry: str, host: str) -> tuple[tuple[int, int], ...] | None:
    parts = host.split(".")
    if len(parts) != 4 or not all(_OCTET.match(p) for p in parts):
        if all(p.isdigit() or ("-" in p and p.replace("-", "").isdigit()) for p in parts if p):
            raise _bad(entry, "an IPv4 address or range has four octets, each 0-255 or a range a-b")
        return None
    octets = []
    for part in parts:
        match = _OCTET.match(part)
        assert match is not None
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > 255 or high > 255:
            raise _bad(entry, f"octet {part!r} is above 255")
        if low > high:
            raise _bad(entry, f"range {part!r} runs backwards")
        octets.append((low, high))
    count = 1
    for low, high in octets:
        count *= high - low + 1
    if count > MAX_HOSTS_PER_ENTRY:
        raise _bad(entry, f"the range names {count} hosts (at most {MAX_HOSTS_PER_ENTRY})")
    return tuple(octets)


def parse(entry: object) -> Entry:
    """Validate one entry; raises InvalidInput (400) naming it when it is malformed."""
    if not isinstance(entry, str) or not entry.strip():
        raise InvalidInput(f"invalid compute node entry {entry!r}: expected a non-empty string", field="entries")
    text = entry.strip()
    match = _ENTRY.match(text)
    if match is None:
        raise _bad(entry, "expected scheme://host:port, an IPv4 range like http://10.0.1-3.1-2:12805, or a DNS name")
    scheme = (match.group("scheme") or "http").lower()
    if scheme not in SCHEMES:
        raise _bad(entry, f"the scheme must be one of {', '.join(SCHEMES)}")
    port_text = match.group("port")
    if port_text is None or port_text == "":
        if port_text == "":
            raise _bad(entry, "the port is empty")
        port = DEFAULT_PORT
    elif not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(entry, f"port {port_text!r} is not a number between 1 and 65535")
    else:
        port = int(port_text)
    host = match.group("host").lower()
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(entry, f"{host} is not an IPv6 address") from None
        return Entry(scheme, host, port, None)
    octets = _octets(entry, host)
    if octets is None:
        labels = host.rstrip(".").split(".")
        if not all(_LABEL.match(label) for label in labels) or len(host) > 253:
            raise _bad(entry, f"{host!r} is not a host name, IPv4 address or range")
    return Entry(scheme, host, port, octets)


def parse_all(entries: object) -> list[Entry]:
    """The `entries` of a request body: a list of entry strings (a string may hold several, comma-separated)."""
    if not isinstance(entries, list):
        raise InvalidInput("'entries' must be a list of compute node URIs or ranges", field="entries")
    parsed: list[Entry] = []
    for entry in entries:
        pieces = entry.split(",") if isinstance(entry, str) and "," in entry else [entry]
        parsed.extend(parse(piece) for piece in pieces)
    return parsed


def unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


async def _resolve(host: str, port: int) -> list[str]:
    """The IPv4 addresses of a name (every one of them), or the name itself when it does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM), timeout=5
        )
    except (OSError, TimeoutError):
        return [host]  # unresolvable now: kept, so /status reports it as failed
    addresses = sorted({str(info[4][0]) for info in infos}, key=lambda a: tuple(int(x) for x in a.split(".")))
    return addresses or [host]


async def expand(entries: Iterable[str]) -> list[str]:
    """Node URIs (`scheme://address:port`) of stored entries; names resolve to all their addresses.

    A name resolving to a single address keeps its name (so certificates and logs show it).
    """
    uris: list[str] = []
    for text in entries:
        try:
            entry = parse(text)
        except InvalidInput:
            continue  # entries are validated on the way in; a bad seed is skipped, not fatal
        if entry.is_name and entry.host != "localhost":
            addresses = await _resolve(entry.host, entry.port)
            hosts = addresses if len(addresses) > 1 else [entry.host]
        else:
            hosts = entry.hosts()
        uris.extend(f"{entry.scheme}://{host}:{entry.port}" for host in hosts)
    return unique(uris)
