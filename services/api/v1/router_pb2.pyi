from interns.api.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteChatCompletionRequest(_message.Message):
    __slots__ = ("trace_id", "metadata", "input")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    metadata: _chat_pb2.RequestMetadata
    input: _chat_pb2.ChatCompletionInput
    def __init__(self, trace_id: _Optional[str] = ..., metadata: _Optional[_Union[_chat_pb2.RequestMetadata, _Mapping]] = ..., input: _Optional[_Union[_chat_pb2.ChatCompletionInput, _Mapping]] = ...) -> None: ...

class RouteChatCompletionResponse(_message.Message):
    __slots__ = ("output", "route")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    output: _chat_pb2.ChatCompletionOutput
    route: _chat_pb2.RouteDecision
    def __init__(self, output: _Optional[_Union[_chat_pb2.ChatCompletionOutput, _Mapping]] = ..., route: _Optional[_Union[_chat_pb2.RouteDecision, _Mapping]] = ...) -> None: ...

class StreamRouteChatCompletionRequest(_message.Message):
    __slots__ = ("trace_id", "metadata", "input")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    metadata: _chat_pb2.RequestMetadata
    input: _chat_pb2.ChatCompletionInput
    def __init__(self, trace_id: _Optional[str] = ..., metadata: _Optional[_Union[_chat_pb2.RequestMetadata, _Mapping]] = ..., input: _Optional[_Union[_chat_pb2.ChatCompletionInput, _Mapping]] = ...) -> None: ...

class StreamRouteChatCompletionResponse(_message.Message):
    __slots__ = ("id", "model", "delta", "route")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    delta: _chat_pb2.ChatCompletionDelta
    route: _chat_pb2.RouteDecision
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., delta: _Optional[_Union[_chat_pb2.ChatCompletionDelta, _Mapping]] = ..., route: _Optional[_Union[_chat_pb2.RouteDecision, _Mapping]] = ...) -> None: ...

class GetRoutingTableRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RouteEntry(_message.Message):
    __slots__ = ("task_id", "target", "model_version", "mode", "canary_share")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CANARY_SHARE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    target: str
    model_version: int
    mode: str
    canary_share: float
    def __init__(self, task_id: _Optional[str] = ..., target: _Optional[str] = ..., model_version: _Optional[int] = ..., mode: _Optional[str] = ..., canary_share: _Optional[float] = ...) -> None: ...

class GetRoutingTableResponse(_message.Message):
    __slots__ = ("entries", "revision")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[RouteEntry]
    revision: int
    def __init__(self, entries: _Optional[_Iterable[_Union[RouteEntry, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...
