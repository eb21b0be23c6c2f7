from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelColumn(_message.Message):
    __slots__ = ("name", "type", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model_hash", "content")
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    model_hash: str
    content: bytes
    def __init__(self, model_hash: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class LoadModelReply(_message.Message):
    __slots__ = ("format", "inputs", "outputs")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    format: str
    inputs: _containers.RepeatedCompositeFieldContainer[ModelColumn]
    outputs: _containers.RepeatedCompositeFieldContainer[ModelColumn]
    def __init__(self, format: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ModelColumn, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[ModelColumn, _Mapping]]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model_hash",)
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    model_hash: str
    def __init__(self, model_hash: _Optional[str] = ...) -> None: ...

class UnloadModelReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelFiguresRequest(_message.Message):
    __slots__ = ("model_hash",)
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    model_hash: str
    def __init__(self, model_hash: _Optional[str] = ...) -> None: ...

class ModelFigures(_message.Message):
    __slots__ = ("requests", "calls", "batched_requests")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    BATCHED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    calls: int
    batched_requests: int
    def __init__(self, requests: _Optional[int] = ..., calls: _Optional[int] = ..., batched_requests: _Optional[int] = ...) -> None: ...
