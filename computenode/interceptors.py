"""gRPC server interceptors: the compute node's edge of the error model."""

from __future__ import annotations

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
