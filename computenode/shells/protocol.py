"""Framed messages between the compute node and a shell child process.

A frame is `!II` (header length, payload length), a JSON header, then the payload:
the concatenation of the blobs listed by length in the header's `_parts`. Both sides
import this module; the child side uses the blocking functions on a plain socket.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
from typing import Any, cast

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


Frame = tuple[dict[str, Any], list[bytes]]


def take_frame(buffer: bytearray) -> Frame | int:
    """Remove the first whole frame from `buffer` and return it, or the number of bytes it still
    lacks; ProtocolError for a header too large or not JSON."""
    if len(buffer) < _PREFIX.size:
        return _PREFIX.size - len(buffer)
    head_len, payload_len = cast(tuple[int, int], _PREFIX.unpack_from(buffer))
    if head_len > MAX_HEADER:
        raise ProtocolError("frame header too large")
    end = _PREFIX.size + head_len + payload_len
    if len(buffer) < end:
        return end - len(buffer)
    view = memoryview(buffer)
    try:
        header: dict[str, Any] = orjson.loads(view[_PREFIX.size : _PREFIX.size + head_len])
        payload = bytes(view[_PREFIX.size + head_len : end]) if payload_len else b""
    except orjson.JSONDecodeError:
        raise ProtocolError("malformed frame header") from None
    finally:
        view.release()
    del buffer[:end]
    return header, _split(header, payload)


class FrameConnection(asyncio.Protocol):
    """The compute node's end of a shell's socket: frames out, reply frames in, one at a time.

    A protocol rather than a StreamReader: a reply is parsed where its bytes arrive and hands
    its waiter the frame directly (the per-request path of every execution).
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._frames: collections.deque[tuple[dict[str, Any], list[bytes]]] = collections.deque()
        self._waiter: asyncio.Future[tuple[dict[str, Any], list[bytes]]] | None = None
        self._lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            try:
                frame = take_frame(self._buffer)
            except ProtocolError as exc:
                self._close(exc)
                return
            if isinstance(frame, int):
                return
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            else:
                self._frames.append(frame)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = ProtocolError("shell closed its connection")
        self._transport = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._lost)

    def _close(self, error: ProtocolError) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._lost = error

    def send_many(self, frames: list[tuple[dict[str, Any], tuple[bytes, ...]]]) -> None:
        """Write frames in one call (one wake-up of the shell for all of them)."""
        if self._transport is None or self._transport.is_closing():
            raise ProtocolError("shell closed its connection")
        if len(frames) == 1:
            self._transport.write(encode(frames[0][0], *frames[0][1]))
        else:
            self._transport.write(b"".join([encode(header, *blobs) for header, blobs in frames]))

    def reply(self) -> asyncio.Future[tuple[dict[str, Any], list[bytes]]]:
        """The next frame from the shell (a future: await it)."""
        future: asyncio.Future[tuple[dict[str, Any], list[bytes]]] = asyncio.get_running_loop().create_future()
        if self._frames:
            future.set_result(self._frames.popleft())
        elif self._lost is not None:
            future.set_exception(self._lost)
        else:
            self._waiter = future
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class FrameReader:
    """The shell's end: reads whole frames from a blocking socket, most in one recv call."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def recv(self) -> Frame:
        while isinstance(frame := take_frame(self._buffer), int):
            chunk = self._sock.recv(max(frame, 65536))
            if not chunk:
                raise ProtocolError("connection closed")
            self._buffer += chunk
        return frame


def send_frame(sock: socket.socket, header: dict[str, Any], *blobs: bytes) -> None:
    sock.sendall(encode(header, *blobs))
