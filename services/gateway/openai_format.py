"""OpenAI's chat-completions JSON for the gateway's HTTP transport: the request body,
checked with pydantic and turned into the gRPC messages; the answer as a `chat.completion`
body or as `chat.completion.chunk` events; errors in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) with the HTTP status of their gRPC code.

A field is named as a path (`messages[1].role`) in `param` and in the message, like the
gRPC API names it (`input.messages[1].role`) without the `input.` prefix.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError, to_json

from interns.api.v1 import chat_pb2, gateway_pb2
from interns.common.chat import message_to_openai, tool_call_to_openai
from interns.gateway.calls import GatewayError

# HTTP status and OpenAI error type of each gRPC code; any other code is a 500.
_HTTP_STATUS: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
}
# The gateway core names a bad field first, as the README's contract says:
# `input.messages[1].role: must be one of [...]`.
_FIELD_IN_MESSAGE = re.compile(r"input\.(?P<param>[\w.\[\]]+): ")


class ApiError(Exception):
    """An error answered in OpenAI's shape with HTTP status `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": {**error, "code": self.code}}


def error_from_gateway(error: GatewayError) -> ApiError:
    """The gateway's error as OpenAI's; `code` is the gRPC status name in lower case."""
    status, kind = _HTTP_STATUS.get(error.code, (500, "server_error"))
    message, param = error.message, None
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        field = _FIELD_IN_MESSAGE.match(message)
        if field:
            message, param = message.removeprefix("input."), field["param"]
    return ApiError(status, message, error.code.name.lower(), param, kind)


def _json_text(value: Any) -> str:
    return to_json(value).decode()


def _path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


class _Body(BaseModel):
    # Fields the gateway does not use (logprobs, seed, audio, ...) are ignored, so that an
    # SDK's newer or vendor-specific fields never fail a call.
    model_config = ConfigDict(extra="ignore")


class _FunctionCall(_Body):
    name: str
    arguments: str = ""

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_text(cls, value: Any) -> Any:
        # Some clients send the arguments as an object; the contract keeps the JSON text.
        return json.dumps(value) if isinstance(value, dict) else value


class _ToolCall(_Body):
    id: str = ""
    type: Literal["function"] = "function"
    function: _FunctionCall

    def add_to(self, calls) -> None:
        """Appends this call to `calls`, a repeated ToolCall field."""
        function = {"name": self.function.name, "arguments": self.function.arguments}
        calls.add(id=self.id, type=self.type, function=function)


class _Message(_Body):
    role: str
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[_ToolCall] | None = None

    def add_to(self, messages) -> None:
        """Appends this message to `messages`, a repeated ChatMessage field."""
        message = messages.add(
            role=self.role or "assistant",
            content=self.content or "",
            name=self.name or "",
            tool_call_id=self.tool_call_id or "",
        )
        for call in self.tool_calls or ():
            call.add_to(message.tool_calls)

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_joined(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if not all(
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
            for part in value
        ):
            raise PydanticCustomError(
                "text_parts_only", "only text parts (type 'text' with a 'text' string) are served"
            )
        return "\n".join(part["text"] for part in value)


class _FunctionDefinition(_Body):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(_Body):
    type: Literal["function"] = "function"
    function: _FunctionDefinition

    def add_to(self, tools) -> None:
        """Appends this tool to `tools`, a repeated Tool field."""
        function = self.function
        parameters = function.parameters
        tools.add(
            type="function",
            function={
                "name": function.name,
                "description": function.description or "",
                "parameters_json": _json_text(parameters) if parameters is not None else "",
            },
        )


class _ResponseFormat(_Body):
    type: str
    json_schema: dict[str, Any] | None = None


class _StreamOptions(_Body):
    include_usage: bool = False


class ChatCompletionBody(_Body):
    """The request body of `POST /v1/chat/completions`, as far as the gateway reads it."""

    model: str | None = None
    messages: list[_Message]
    tools: list[_Tool] | None = None
    tool_choice: str | None = None
    response_format: _ResponseFormat | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    # One choice per call: a client asking for more would silently get fewer.
    n: int | None = Field(None, ge=1, le=1)
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_name(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        name = (
            (value.get("function") or {}).get("name") if value.get("type") == "function" else None
        )
        if not isinstance(name, str):
            raise PydanticCustomError(
                "tool_choice", "must be auto, none, required or {type: function, function: {name}}"
            )
        return name

    @classmethod
    def parse(cls, raw: bytes) -> ChatCompletionBody:
        """The body read from `raw`, or ApiError (400) naming the first bad field."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as error:
            problem = error.errors(include_url=False)[0]
        if problem["type"] == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "")
            raise ApiError(400, f"request body is not valid JSON: {reason}", "invalid_json")
        param = _path(problem["loc"])
        if not param:
            raise ApiError(400, "request body must be a JSON object", "invalid_argument")
        raise ApiError(400, f"{param}: {problem['msg']}", "invalid_argument", param)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def chat_input(self) -> chat_pb2.ChatCompletionInput:
        """The body as the gRPC API's input, built straight from the parsed body (as
        `input_from_openai` would from its dict, without making that dict first). The
        messages and tools are built in place (`add`): a message given to a constructor
        is copied, which cost a third of the time."""
        fmt = self.response_format
        chat = chat_pb2.ChatCompletionInput(
            model=self.model or "",
            tool_choice=self.tool_choice or "",
            response_format=chat_pb2.ResponseFormat(
                type=fmt.type,
                json_schema_json=_json_text(fmt.json_schema) if fmt.json_schema is not None else "",
            )
            if fmt is not None
            else None,
        )
        for message in self.messages:
            message.add_to(chat.messages)
        for tool in self.tools or ():
            tool.add_to(chat.tools)
        if self.temperature is not None:
            chat.temperature = self.temperature
        max_tokens = self.max_tokens if self.max_tokens is not None else self.max_completion_tokens
        if max_tokens is not None:
            chat.max_tokens = max_tokens
        return chat

    def request_metadata(self, agent_id: str, session_id: str) -> chat_pb2.RequestMetadata:
        """Agent and session from the headers, else from `metadata.agent_id` and
        `metadata.session_id`; the rest of `metadata` becomes labels, and so does `user`.
        `user` is not a session: OpenAI defines it as the end user, who has many
        conversations, and one session for all of them would blur the task mining."""
        labels = dict(self.metadata or {})
        body_agent_id, body_session_id = labels.pop("agent_id", ""), labels.pop("session_id", "")
        if self.user:
            labels.setdefault("user", self.user)
        return chat_pb2.RequestMetadata(
            agent_id=agent_id or body_agent_id,
            session_id=session_id or body_session_id,
            labels=labels,
        )


def _usage(usage: chat_pb2.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_body(response: gateway_pb2.CreateChatCompletionResponse) -> dict[str, Any]:
    """The gateway's answer as an OpenAI `chat.completion`."""
    output = response.output
    message = message_to_openai(output.message)
    return {
        "id": output.id or f"chatcmpl-{response.trace_id}",
        "object": "chat.completion",
        "created": output.created or int(time.time()),
        "model": output.model or response.route.model,
        "choices": [
            {
                "index": 0,
                "message": {**message, "role": message["role"] or "assistant"},
                "logprobs": None,
                "finish_reason": output.finish_reason or "stop",
            }
        ],
        "usage": _usage(output.usage),
    }


def models_body(names: Iterable[str]) -> dict[str, Any]:
    """The answer of `GET /v1/models`."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "interns"} for name in names
        ],
    }


class ChunkEncoder:
    """Turns the gateway's stream into OpenAI `chat.completion.chunk` events, as OpenAI
    sends them: the role first, then text and tool-call deltas (each call with its
    `index`), then the finish reason alone, then the usage with no choices when the
    client asked for it (`stream_options.include_usage`)."""

    def __init__(self, first: gateway_pb2.StreamChatCompletionResponse, include_usage: bool):
        self._id = first.id or f"chatcmpl-{first.trace_id}"
        self._model = first.model or first.route.model
        self._created = int(time.time())
        self._include_usage = include_usage
        self._usage = chat_pb2.Usage()
        self._calls_sent = 0
        self._role_sent = False

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return self._chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )

    def encode(self, response: gateway_pb2.StreamChatCompletionResponse) -> list[dict[str, Any]]:
        """The events of one chunk of the gateway's stream."""
        events = []
        if not self._role_sent:
            events.append(self._delta({"role": "assistant", "content": ""}))
            self._role_sent = True
        delta = response.delta
        if delta.content or delta.tool_calls:
            out: dict[str, Any] = {"content": delta.content} if delta.content else {}
            if delta.tool_calls:
                out["tool_calls"] = [
                    {"index": self._calls_sent + i, **tool_call_to_openai(call)}
                    for i, call in enumerate(delta.tool_calls)
                ]
                self._calls_sent += len(delta.tool_calls)
            events.append(self._delta(out))
        if delta.finish_reason:
            events.append(self._delta({}, delta.finish_reason))
            self._usage = delta.usage
        return events

    def finish(self) -> list[dict[str, Any]]:
        """The events after the last chunk: the usage, when asked for."""
        if not self._include_usage:
            return []
        return [{**self._chunk([]), "usage": _usage(self._usage)}]
