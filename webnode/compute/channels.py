"""How a web node opens gRPC channels to compute nodes: mutual TLS, or a shared secret.

Compute nodes run arbitrary code, so they only accept calls from web nodes. With TLS
configured the channel verifies the compute node against a CA and presents the web node's
client certificate; otherwise every call carries the shared secret in its metadata (checked
by computenode/interceptors.py). Every channel to a compute node should come from
`ChannelFactory.open` so that both hold for every service on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

SECRET_METADATA_KEY = "x-o16n-compute-secret"
# Every channel to a compute node: keepalive pings find a dead node within seconds (even when
# idle), and a node that comes back is reconnected to within a second.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def _with_secret(details: Any, secret: str) -> Any:
    metadata = list(details.metadata or ())
    metadata.append((SECRET_METADATA_KEY, secret))
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=grpc.aio.Metadata(*metadata),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _Secret(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the shared secret to the metadata of every call."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with_secret(details, self._secret), request)

    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with_secret(details, self._secret), request)

    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(_with_secret(details, self._secret), requests)

    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(_with_secret(details, self._secret), requests)


@dataclass(frozen=True)
class ChannelFactory:
    """Opens channels to compute nodes with the web node's security settings."""

    secret: str = ""
    tls_ca: str = ""  # CA file verifying compute nodes; set = TLS
    client_cert: str = ""  # the web node's client certificate (mutual TLS)
    client_key: str = ""
    server_name: str = ""  # expected name in the compute nodes' certificates; empty = the host dialled

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca)

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.tls_ca),
            private_key=read(self.client_key),
            certificate_chain=read(self.client_cert),
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SECRET_METADATA_KEY, self.secret),) if self.secret else ()

    def open(self, target: str, *, max_message: int = 64 << 20, intercept: bool = True) -> grpc.aio.Channel:
        """A channel to `target` (keepalive, fast reconnects, messages up to `max_message` bytes);
        with `intercept=False` the caller passes `metadata()` on each call itself."""
        interceptors = [_Secret(self.secret)] if self.secret and intercept else None
        all_options: list[tuple[str, Any]] = [
            *CHANNEL_OPTIONS,
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
        ]
        if self.tls and self.server_name:
            all_options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.tls:
            return grpc.aio.secure_channel(target, self._credentials(), options=all_options, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=all_options, interceptors=interceptors)
