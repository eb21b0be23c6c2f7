"""The one error model of o16n.

Every failure a client can see is an `AppError` subclass. Each class names a stable
`code`, an HTTP status and a gRPC status in ONE table (`_TABLE`). Two edges translate:
the web node's error middleware (AppError -> JSON body) and the compute node's gRPC
interceptor / stream replies (AppError -> status + code). The web node's compute
client turns the code back into the same AppError class.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc


class AppError(Exception):
    """Base class: a failure with a message a client may read."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, field: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.status,
            "error": self.code,
            "message": self.message,
            "exceptionType": type(self).__name__,
        }
        if self.field:
            body["fields"] = self.field
        return body


class InvalidInput(AppError):
    code = "invalid_input"
    status = 400


class Unauthorized(AppError):
    code = "unauthorized"
    status = 401


class Forbidden(AppError):
    code = "forbidden"
    status = 403


class NotFound(AppError):
    code = "not_found"
    status = 404


class MethodNotAllowed(AppError):
    code = "method_not_allowed"
    status = 405


class Conflict(AppError):
    code = "conflict"
    status = 409


class Gone(AppError):
    code = "gone"
    status = 410


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413


class TooManyRequests(AppError):
    code = "too_many_requests"
    status = 429


class Internal(AppError):
    code = "internal"
    status = 500


class Unavailable(AppError):
    """A dependency (compute node, store, coordination) cannot be reached."""

    code = "unavailable"
    status = 503


class PoolExhausted(Unavailable):
    code = "pool_exhausted"


class ShellCrashed(AppError):
    code = "shell_crashed"
    status = 500


class Timeout(AppError):
    code = "timeout"
    status = 504


class ServiceNotLoaded(AppError):
    """Internal signal: the compute node does not hold that service version yet."""

    code = "service_not_loaded"
    status = 503


_CLASSES: tuple[type[AppError], ...] = (
    InvalidInput,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Gone,
    PayloadTooLarge,
    TooManyRequests,
    Internal,
    Unavailable,
    PoolExhausted,
    ShellCrashed,
    Timeout,
    ServiceNotLoaded,
)

# code -> (class, gRPC status). HTTP status lives on the class.
_TABLE: dict[str, tuple[type[AppError], grpc.StatusCode]] = {
    InvalidInput.code: (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    Unauthorized.code: (Unauthorized, grpc.StatusCode.UNAUTHENTICATED),
    Forbidden.code: (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    NotFound.code: (NotFound, grpc.StatusCode.NOT_FOUND),
    MethodNotAllowed.code: (MethodNotAllowed, grpc.StatusCode.UNIMPLEMENTED),
    Conflict.code: (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    Gone.code: (Gone, grpc.StatusCode.FAILED_PRECONDITION),
    PayloadTooLarge.code: (PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    TooManyRequests.code: (TooManyRequests, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Internal.code: (Internal, grpc.StatusCode.INTERNAL),
    Unavailable.code: (Unavailable, grpc.StatusCode.UNAVAILABLE),
    PoolExhausted.code: (PoolExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ShellCrashed.code: (ShellCrashed, grpc.StatusCode.ABORTED),
    Timeout.code: (Timeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    ServiceNotLoaded.code: (ServiceNotLoaded, grpc.StatusCode.FAILED_PRECONDITION),
}
assert set(_TABLE) == {c.code for c in _CLASSES}

# Metadata key carrying the AppError code on a failed unary RPC.
ERROR_CODE_KEY = "o16n-error-code"
ERROR_FIELD_KEY = "o16n-error-field"


def grpc_status_for(error: AppError) -> grpc.StatusCode:
    return _TABLE.get(error.code, (Internal, grpc.StatusCode.INTERNAL))[1]


def from_code(code: str, message: str, field: str = "") -> AppError:
    """Rebuild the AppError that a compute node sent as (code, message, field)."""
    cls = _TABLE.get(code, (Internal, grpc.StatusCode.INTERNAL))[0]
    return cls(message, field=field)


def from_rpc_error(error: grpc.RpcError) -> AppError:
    """Turn a failed gRPC call into an AppError (the web node's side of the edge)."""
    metadata = {}
    trailing = getattr(error, "trailing_metadata", None)
    if callable(trailing):
        metadata = {k: v for k, v in (trailing() or ()) if isinstance(v, str)}
    details = error.details() if hasattr(error, "details") else str(error)
    if ERROR_CODE_KEY in metadata:
        return from_code(metadata[ERROR_CODE_KEY], details or "", metadata.get(ERROR_FIELD_KEY, ""))
    status = error.code() if hasattr(error, "code") else None
    if status == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Timeout("the compute node did not answer in time")
    return Unavailable(f"compute node unavailable: {details or status}")
