"""Framed messages between the compute node and a shell child process.

A frame is `!II` (header length, payload length), a JSON header, then the payload:
the concatenation of the blobs listed by length in the header's `_parts`. Both sides
import this module; the child side uses the blocking functions on a plain socket.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import orjson

PROTOCOL_VERSION = 1
_PREFIX = struct.Struct("!II")
MAX_HEADER = 64 * 1024 * 1024


class ProtocolError(ConnectionError):
    """The other side closed the connection or sent a malformed frame."""


def encode(header: dict[str, Any], *blobs: bytes) -> bytes:
    if blobs:
        header = {**header, "_parts": [len(b) for b in blobs]}
    head = orjson.dumps(header)
    payload = b"".join(blobs)
    return _PREFIX.pack(len(head), len(payload)) + head + payload


def _split(header: dict[str, Any], payload: bytes) -> list[bytes]:
    parts: list[bytes] = []
    offset = 0
    for length in header.pop("_parts", ()):
        parts.append(payload[offset : offset + length])
        offset += length
    return parts


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], list[bytes]]:
    try:
        prefix = await reader.readexactly(_PREFIX.size)
        head_len, payload_len = _PREFIX.unpack(prefix)
        if head_len > MAX_HEADER:
            raise ProtocolError("frame header too large")
        head = await reader.readexactly(head_len)
        payload = await reader.readexactly(payload_len) if payload_len else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("shell closed its connection") from exc
    header = orjson.loads(head)
    return header, _split(header, payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ProtocolError("connection closed")
        got += n
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], list[bytes]]:
    head_len, payload_len = _PREFIX.unpack(_recv_exactly(sock, _PREFIX.size))
    header = orjson.loads(_recv_exactly(sock, head_len))
    payload = _recv_exactly(sock, payload_len) if payload_len else b""
    return header, _split(header, payload)


def send_frame(sock: socket.socket, header: dict[str, Any], *blobs: bytes) -> None:
    sock.sendall(encode(header, *blobs))
