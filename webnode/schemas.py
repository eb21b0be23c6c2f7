"""The REST contract's request and response shapes (ML Server 9.3 field names), and only here."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common import values
from common.errors import InvalidInput, PayloadTooLarge
from webnode.middleware import parse_json
from webnode.store.services import Service

M = TypeVar("M", bound=BaseModel)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
RUNTIMES = {"r": "R", "python": "Python"}


def runtime_type(value: str | None) -> str | None:
    """The canonical runtimeType ("R" or "Python"); None stays None (the caller's default applies)."""
    if value is None:
        return None
    canonical = RUNTIMES.get(value.strip().lower())
    if canonical is None:
        raise ValueError(f"runtimeType must be R or Python, not {value!r}")
    return canonical


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class LoginRequest(_Model):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=4096)


class RenewTokenRequest(_Model):
    refreshToken: str = Field(min_length=1, max_length=4096)


class ParameterDefinition(_Model):
    name: str
    type: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value) or len(value) > 256:
            raise ValueError(f"{value!r} is not a valid parameter name")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        canonical = values.normalize_type(value)
        if canonical is None:
            raise ValueError(f"unknown type {value!r}; expected one of {', '.join(values.TYPES)}")
        return canonical


class PublishRequest(_Model):
    snapshotId: str | None = None
    code: str | None = None
    description: str | None = None
    operationId: str | None = None
    inputParameterDefinitions: list[ParameterDefinition] | None = None
    outputParameterDefinitions: list[ParameterDefinition] | None = None
    runtimeType: str | None = None
    initCode: str | None = None
    outputFileNames: list[str] | None = None

    @field_validator("runtimeType")
    @classmethod
    def _runtime(cls, value: str | None) -> str | None:
        return runtime_type(value)

    @field_validator("inputParameterDefinitions", "outputParameterDefinitions")
    @classmethod
    def _unique(cls, value: list[ParameterDefinition] | None) -> list[ParameterDefinition] | None:
        if value is not None:
            names = [p.name for p in value]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"duplicate parameter name {duplicates[0]!r}")
        return value

    @field_validator("outputFileNames")
    @classmethod
    def _files(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
                raise ValueError(f"{name!r} is not a plain file name")
        return value

    @field_validator("operationId")
    @classmethod
    def _operation(cls, value: str | None) -> str | None:
        if value and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"operationId {value!r} must be an identifier")
        return value or None


def check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field=what,
        )
    return value


async def read_model(request: web.Request, model: type[M], *, limit: int) -> M:
    """Read and validate a JSON body: 400 naming the field that is wrong, 413 when too large."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    raw = await request.read()
    if len(raw) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{where}: {message}", field=where) from None


def creation_time(epoch: float) -> str:
    """ML Server's format: ISO 8601 with 7 fractional digits and no zone (UTC)."""
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}0"


def service_json(service: Service, permission: str) -> dict[str, Any]:
    """The WebService record, every field of the contract with its casing."""
    return {
        "name": service.name,
        "version": service.version,
        "versionPublishedBy": service.owner,
        "owner": service.owner,
        "creationTime": creation_time(service.created_at),
        "snapshotId": service.snapshot_id,
        "runtimeType": service.runtime,
        "initCode": service.init_code,
        "code": service.code,
        "description": service.description,
        "operationId": service.operation_id,
        "inputParameterDefinitions": [{"name": p.name, "type": p.type} for p in service.inputs],
        "outputParameterDefinitions": [{"name": p.name, "type": p.type} for p in service.outputs],
        "outputFileNames": list(service.output_files),
        "myPermissionOnService": permission,
    }


def token_json(access_token: str, expires_on: int, lifetime: int, refresh_token: str) -> dict[str, Any]:
    return {
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": lifetime,
        "expires_on": expires_on,
        "refresh_token": refresh_token,
    }


# ---------------------------------------------------------------------- sessions
class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(default=None, max_length=256)
    snapshotId: str | None = Field(default=None, max_length=256)
    runtimeType: str | None = None

    @field_validator("runtimeType")
    @classmethod
    def _runtime(cls, value: str | None) -> str | None:
        return runtime_type(value)


class WorkspaceObject(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=256)
    value: Any = None


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: str
    inputParameters: list[WorkspaceObject] | None = None
    outputParameters: list[str] | None = None

    @field_validator("outputParameters")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not name or len(name) > 256:
                raise ValueError(f"{name!r} is not a valid object name")
        return value


class CreateSnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(default=None, max_length=256)
