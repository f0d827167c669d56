from interns.api.v1 import chat_pb2 as _chat_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateChatCompletionRequest(_message.Message):
    __slots__ = ("metadata", "input")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    metadata: _chat_pb2.RequestMetadata
    input: _chat_pb2.ChatCompletionInput
    def __init__(self, metadata: _Optional[_Union[_chat_pb2.RequestMetadata, _Mapping]] = ..., input: _Optional[_Union[_chat_pb2.ChatCompletionInput, _Mapping]] = ...) -> None: ...

class CreateChatCompletionResponse(_message.Message):
    __slots__ = ("trace_id", "output", "route")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    output: _chat_pb2.ChatCompletionOutput
    route: _chat_pb2.RouteDecision
    def __init__(self, trace_id: _Optional[str] = ..., output: _Optional[_Union[_chat_pb2.ChatCompletionOutput, _Mapping]] = ..., route: _Optional[_Union[_chat_pb2.RouteDecision, _Mapping]] = ...) -> None: ...

class StreamChatCompletionRequest(_message.Message):
    __slots__ = ("metadata", "input")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    metadata: _chat_pb2.RequestMetadata
    input: _chat_pb2.ChatCompletionInput
    def __init__(self, metadata: _Optional[_Union[_chat_pb2.RequestMetadata, _Mapping]] = ..., input: _Optional[_Union[_chat_pb2.ChatCompletionInput, _Mapping]] = ...) -> None: ...

class StreamChatCompletionResponse(_message.Message):
    __slots__ = ("trace_id", "id", "model", "delta", "route")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    id: str
    model: str
    delta: _chat_pb2.ChatCompletionDelta
    route: _chat_pb2.RouteDecision
    def __init__(self, trace_id: _Optional[str] = ..., id: _Optional[str] = ..., model: _Optional[str] = ..., delta: _Optional[_Union[_chat_pb2.ChatCompletionDelta, _Mapping]] = ..., route: _Optional[_Union[_chat_pb2.RouteDecision, _Mapping]] = ...) -> None: ...
