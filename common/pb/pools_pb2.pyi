from common.pb import compute_pb2 as _compute_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetServicePoolRequest(_message.Message):
    __slots__ = ("service", "initial_size", "max_size", "owner")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    service: _compute_pb2.ServiceDefinition
    initial_size: int
    max_size: int
    owner: str
    def __init__(self, service: _Optional[_Union[_compute_pb2.ServiceDefinition, _Mapping]] = ..., initial_size: _Optional[int] = ..., max_size: _Optional[int] = ..., owner: _Optional[str] = ...) -> None: ...

class ServicePoolState(_message.Message):
    __slots__ = ("service_id", "service_key", "initial_size", "figures", "ready", "owner")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    INITIAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    service_key: str
    initial_size: int
    figures: _compute_pb2.PoolStatus
    ready: bool
    owner: str
    def __init__(self, service_id: _Optional[str] = ..., service_key: _Optional[str] = ..., initial_size: _Optional[int] = ..., figures: _Optional[_Union[_compute_pb2.PoolStatus, _Mapping]] = ..., ready: _Optional[bool] = ..., owner: _Optional[str] = ...) -> None: ...

class DeleteServicePoolRequest(_message.Message):
    __slots__ = ("service_id",)
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    def __init__(self, service_id: _Optional[str] = ...) -> None: ...

class DeleteServicePoolReply(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ListServicePoolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServicePoolsReply(_message.Message):
    __slots__ = ("pools",)
    POOLS_FIELD_NUMBER: _ClassVar[int]
    pools: _containers.RepeatedCompositeFieldContainer[ServicePoolState]
    def __init__(self, pools: _Optional[_Iterable[_Union[ServicePoolState, _Mapping]]] = ...) -> None: ...
