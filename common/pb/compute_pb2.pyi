from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Runtime(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNTIME_UNSPECIFIED: _ClassVar[Runtime]
    PYTHON: _ClassVar[Runtime]
    R: _ClassVar[Runtime]
RUNTIME_UNSPECIFIED: Runtime
PYTHON: Runtime
R: Runtime

class Parameter(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class ServiceDefinition(_message.Message):
    __slots__ = ("key", "runtime", "code", "init_code", "inputs", "outputs", "output_file_names", "snapshot_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    INIT_CODE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FILE_NAMES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    runtime: Runtime
    code: str
    init_code: str
    inputs: _containers.RepeatedCompositeFieldContainer[Parameter]
    outputs: _containers.RepeatedCompositeFieldContainer[Parameter]
    output_file_names: _containers.RepeatedScalarFieldContainer[str]
    snapshot_id: str
    def __init__(self, key: _Optional[str] = ..., runtime: _Optional[_Union[Runtime, str]] = ..., code: _Optional[str] = ..., init_code: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., output_file_names: _Optional[_Iterable[str]] = ..., snapshot_id: _Optional[str] = ...) -> None: ...

class ExecuteServiceRequest(_message.Message):
    __slots__ = ("service_key", "inputs_json")
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    service_key: str
    inputs_json: bytes
    def __init__(self, service_key: _Optional[str] = ..., inputs_json: _Optional[bytes] = ...) -> None: ...

class OutputFile(_message.Message):
    __slots__ = ("name", "content", "present")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: bytes
    present: bool
    def __init__(self, name: _Optional[str] = ..., content: _Optional[bytes] = ..., present: _Optional[bool] = ...) -> None: ...

class ExecutionResult(_message.Message):
    __slots__ = ("success", "error_message", "outputs_json", "console_output", "changed_files", "output_files")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FILES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FILES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    outputs_json: bytes
    console_output: str
    changed_files: _containers.RepeatedScalarFieldContainer[str]
    output_files: _containers.RepeatedCompositeFieldContainer[OutputFile]
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., outputs_json: _Optional[bytes] = ..., console_output: _Optional[str] = ..., changed_files: _Optional[_Iterable[str]] = ..., output_files: _Optional[_Iterable[_Union[OutputFile, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class CallBatch(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallRequest]
    def __init__(self, calls: _Optional[_Iterable[_Union[CallRequest, _Mapping]]] = ...) -> None: ...

class ReplyBatch(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[CallReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[CallReply, _Mapping]]] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("id", "execute_service", "session_execute", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXECUTE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    execute_service: ExecuteServiceRequest
    session_execute: SessionExecute
    score: ScoreRequest
    def __init__(self, id: _Optional[int] = ..., execute_service: _Optional[_Union[ExecuteServiceRequest, _Mapping]] = ..., session_execute: _Optional[_Union[SessionExecute, _Mapping]] = ..., score: _Optional[_Union[ScoreRequest, _Mapping]] = ...) -> None: ...

class CallReply(_message.Message):
    __slots__ = ("id", "result", "error", "progress", "scored")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    id: int
    result: ExecutionResult
    error: Error
    progress: Progress
    scored: ScoreReply
    def __init__(self, id: _Optional[int] = ..., result: _Optional[_Union[ExecutionResult, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., scored: _Optional[_Union[ScoreReply, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage",)
    class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STAGE_UNSPECIFIED: _ClassVar[Progress.Stage]
        QUEUED: _ClassVar[Progress.Stage]
        STARTED: _ClassVar[Progress.Stage]
    STAGE_UNSPECIFIED: Progress.Stage
    QUEUED: Progress.Stage
    STARTED: Progress.Stage
    STAGE_FIELD_NUMBER: _ClassVar[int]
    stage: Progress.Stage
    def __init__(self, stage: _Optional[_Union[Progress.Stage, str]] = ...) -> None: ...

class LoadServiceRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: ServiceDefinition
    def __init__(self, service: _Optional[_Union[ServiceDefinition, _Mapping]] = ...) -> None: ...

class LoadServiceReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnloadServiceRequest(_message.Message):
    __slots__ = ("service_key",)
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    service_key: str
    def __init__(self, service_key: _Optional[str] = ...) -> None: ...

class UnloadServiceReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PoolStatus(_message.Message):
    __slots__ = ("runtime", "max_size", "current_size", "active", "idle", "queued", "can_open_shell", "unavailable_reason", "service", "initial_size")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    CAN_OPEN_SHELL_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    runtime: Runtime
    max_size: int
    current_size: int
    active: int
    idle: int
    queued: int
    can_open_shell: bool
    unavailable_reason: str
    service: str
    initial_size: int
    def __init__(self, runtime: _Optional[_Union[Runtime, str]] = ..., max_size: _Optional[int] = ..., current_size: _Optional[int] = ..., active: _Optional[int] = ..., idle: _Optional[int] = ..., queued: _Optional[int] = ..., can_open_shell: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., service: _Optional[str] = ..., initial_size: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("api_version", "node_id", "pools", "loaded_services", "log_path", "service_pools")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    LOADED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    SERVICE_POOLS_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    node_id: str
    pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    loaded_services: int
    log_path: str
    service_pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    def __init__(self, api_version: _Optional[str] = ..., node_id: _Optional[str] = ..., pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ..., loaded_services: _Optional[int] = ..., log_path: _Optional[str] = ..., service_pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model_hash", "body_json")
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    model_hash: str
    body_json: bytes
    def __init__(self, model_hash: _Optional[str] = ..., body_json: _Optional[bytes] = ...) -> None: ...

class ScoreReply(_message.Message):
    __slots__ = ("outputs_json",)
    OUTPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    outputs_json: bytes
    def __init__(self, outputs_json: _Optional[bytes] = ...) -> None: ...

class SessionExecute(_message.Message):
    __slots__ = ("session_id", "code", "inputs_json", "output_names")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAMES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    code: str
    inputs_json: bytes
    output_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., code: _Optional[str] = ..., inputs_json: _Optional[bytes] = ..., output_names: _Optional[_Iterable[str]] = ...) -> None: ...
