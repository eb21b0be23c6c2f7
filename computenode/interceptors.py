"""gRPC server interceptors: the compute node's edge of the error model."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from common.errors import ERROR_CODE_KEY, ERROR_FIELD_KEY, AppError, grpc_status_for

logger = logging.getLogger(__name__)


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns an AppError raised by a unary method into a gRPC status plus the error code in metadata."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except AppError as exc:
                context.set_trailing_metadata(((ERROR_CODE_KEY, exc.code), (ERROR_FIELD_KEY, exc.field)))
                await context.abort(grpc_status_for(exc), exc.message)
            except Exception:
                logger.exception("unexpected error in %s", handler_call_details.method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error on the compute node")

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


SECRET_METADATA_KEY = "x-o16n-compute-secret"
OPEN_METHODS = ("/grpc.health.v1.Health/",)  # probes (Kubernetes, load balancers) need no secret


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that rejects the call as UNAUTHENTICATED."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(abort, **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    return grpc.stream_stream_rpc_method_handler(abort, **kwargs)


class SecretInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Accepts a call only when its metadata carries the shared secret web nodes are given."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(OPEN_METHODS):
            return handler
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == SECRET_METADATA_KEY:
                presented = value.encode() if isinstance(value, str) else bytes(value)
        if hmac.compare_digest(presented, self._secret):
            return handler
        logger.warning("rejected a call to %s without the right shared secret", method)
        return _deny(handler, "this compute node accepts calls only from web nodes (wrong or missing secret)")
