"""Conversions between the gRPC chat messages and OpenAI's chat-completions JSON, and the
validation of a request. The gateway and the router both speak both shapes."""

from __future__ import annotations

import json
import time
from typing import Any

from google.protobuf.json_format import MessageToDict
from pydantic_core import from_json

from interns.api.v1 import chat_pb2

ROLES = {"system", "user", "assistant", "tool", "developer"}
RESPONSE_FORMATS = {"", "text", "json_object", "json_schema"}
TOOL_CHOICES = {"", "auto", "none", "required"}


class InvalidRequest(ValueError):
    """A request field is wrong; `field` names it as a path, such as `input.messages[2].role`."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


def _parse_json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = from_json(text)
    except ValueError as error:
        raise InvalidRequest(field, f"is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise InvalidRequest(field, "must be a JSON object")
    return value


def validate_input(chat: chat_pb2.ChatCompletionInput, prefix: str = "input") -> None:
    """Raises InvalidRequest naming the first bad field of `chat`."""
    if not chat.messages:
        raise InvalidRequest(f"{prefix}.messages", "at least one message is required")
    for i, message in enumerate(chat.messages):
        role = message.role
        if role not in ROLES:
            raise InvalidRequest(f"{prefix}.messages[{i}].role", f"must be one of {sorted(ROLES)}")
        if role == "tool" and not message.tool_call_id:
            raise InvalidRequest(
                f"{prefix}.messages[{i}].tool_call_id", "is required for a tool message"
            )
        if not message.tool_calls:
            continue
        if role != "assistant":
            raise InvalidRequest(
                f"{prefix}.messages[{i}].tool_calls", "only assistant messages call tools"
            )
        for j, call in enumerate(message.tool_calls):
            if not call.function.name:
                raise InvalidRequest(
                    f"{prefix}.messages[{i}].tool_calls[{j}].function.name", "is required"
                )
    names: set[str] = set()
    for i, tool in enumerate(chat.tools):
        where = f"{prefix}.tools[{i}]"
        if tool.type not in ("", "function"):
            raise InvalidRequest(f"{where}.type", "must be 'function'")
        if not tool.function.name:
            raise InvalidRequest(f"{where}.function.name", "is required")
        if tool.function.name in names:
            raise InvalidRequest(f"{where}.function.name", f"'{tool.function.name}' is repeated")
        names.add(tool.function.name)
        if tool.function.parameters_json:
            _parse_json_object(tool.function.parameters_json, f"{where}.function.parameters_json")
    if chat.tool_choice not in TOOL_CHOICES and chat.tool_choice not in names:
        raise InvalidRequest(
            f"{prefix}.tool_choice", "must be auto, none, required or the name of a given tool"
        )
    if chat.response_format.type not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"{prefix}.response_format.type", "must be text, json_object or json_schema"
        )
    if chat.response_format.type == "json_schema":
        _parse_json_object(
            chat.response_format.json_schema_json, f"{prefix}.response_format.json_schema_json"
        )
    if chat.HasField("max_tokens") and chat.max_tokens <= 0:
        raise InvalidRequest(f"{prefix}.max_tokens", "must be positive")
    if chat.HasField("temperature") and not 0 <= chat.temperature <= 2:
        raise InvalidRequest(f"{prefix}.temperature", "must be between 0 and 2")


def message_to_openai(message: chat_pb2.ChatMessage) -> dict[str, Any]:
    """A gRPC chat message as an OpenAI message dict."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [tool_call_to_openai(call) for call in message.tool_calls]
        if not message.content:
            out["content"] = None
    return out


def message_from_openai(message: dict[str, Any]) -> chat_pb2.ChatMessage:
    """An OpenAI message dict as a gRPC chat message."""
    return chat_pb2.ChatMessage(
        role=message.get("role") or "assistant",
        content=message.get("content") or "",
        name=message.get("name") or "",
        tool_call_id=message.get("tool_call_id") or "",
        tool_calls=[tool_call_from_openai(call) for call in message.get("tool_calls") or []],
    )


def tool_call_to_openai(call: chat_pb2.ToolCall) -> dict[str, Any]:
    """A gRPC tool call as an OpenAI `tool_calls[]` item."""
    return {
        "id": call.id,
        "type": call.type or "function",
        "function": {"name": call.function.name, "arguments": call.function.arguments},
    }


def tool_call_from_openai(call: dict[str, Any]) -> chat_pb2.ToolCall:
    function = call.get("function") or {}
    arguments = function.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return chat_pb2.ToolCall(
        id=call.get("id") or "",
        type=call.get("type") or "function",
        function=chat_pb2.FunctionCall(name=function.get("name") or "", arguments=arguments),
    )


def tool_to_openai(tool: chat_pb2.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description:
        function["description"] = tool.function.description
    if tool.function.parameters_json:
        function["parameters"] = from_json(tool.function.parameters_json)
    return {"type": "function", "function": function}


def tool_from_openai(tool: dict[str, Any]) -> chat_pb2.Tool:
    function = tool.get("function") or {}
    parameters = function.get("parameters")
    return chat_pb2.Tool(
        type="function",
        function=chat_pb2.FunctionDefinition(
            name=function.get("name") or "",
            description=function.get("description") or "",
            parameters_json=json.dumps(parameters) if parameters is not None else "",
        ),
    )


def response_format_to_openai(fmt: chat_pb2.ResponseFormat) -> dict[str, Any] | None:
    if fmt.type in ("", "text"):
        return None
    if fmt.type == "json_schema":
        return {"type": "json_schema", "json_schema": json.loads(fmt.json_schema_json)}
    return {"type": fmt.type}


def input_to_openai(chat: chat_pb2.ChatCompletionInput, default_model: str) -> dict[str, Any]:
    """A validated gRPC input as an OpenAI chat-completions request body."""
    body: dict[str, Any] = {
        "model": chat.model or default_model,
        "messages": [message_to_openai(m) for m in chat.messages],
    }
    if chat.tools:
        body["tools"] = [tool_to_openai(t) for t in chat.tools]
    if chat.tool_choice in ("auto", "none", "required"):
        body["tool_choice"] = chat.tool_choice
    elif chat.tool_choice:
        body["tool_choice"] = {"type": "function", "function": {"name": chat.tool_choice}}
    response_format = response_format_to_openai(chat.response_format)
    if response_format:
        body["response_format"] = response_format
    if chat.HasField("temperature"):
        body["temperature"] = chat.temperature
    if chat.HasField("max_tokens"):
        body["max_tokens"] = chat.max_tokens
    return body


def output_from_openai(body: dict[str, Any]) -> chat_pb2.ChatCompletionOutput:
    """An OpenAI chat-completions response body as a gRPC output."""
    choice = (body.get("choices") or [{}])[0]
    usage = body.get("usage") or {}
    return chat_pb2.ChatCompletionOutput(
        id=body.get("id") or "",
        created=int(body.get("created") or time.time()),
        model=body.get("model") or "",
        message=message_from_openai(choice.get("message") or {}),
        finish_reason=choice.get("finish_reason") or "",
        usage=chat_pb2.Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
        ),
    )


def metadata_to_dict(metadata: chat_pb2.RequestMetadata) -> dict[str, Any]:
    return MessageToDict(metadata, preserving_proto_field_name=True)


def input_from_openai(body: dict[str, Any]) -> chat_pb2.ChatCompletionInput:
    """An OpenAI chat-completions request body as a gRPC input (for replays and imports)."""
    tool_choice = body.get("tool_choice") or ""
    if isinstance(tool_choice, dict):
        tool_choice = (tool_choice.get("function") or {}).get("name", "")
    response_format = body.get("response_format") or {}
    chat = chat_pb2.ChatCompletionInput(
        model=body.get("model") or "",
        messages=[message_from_openai(m) for m in body.get("messages") or []],
        tools=[tool_from_openai(t) for t in body.get("tools") or []],
        tool_choice=tool_choice,
        response_format=chat_pb2.ResponseFormat(
            type=response_format.get("type", ""),
            json_schema_json=json.dumps(response_format["json_schema"])
            if "json_schema" in response_format
            else "",
        ),
    )
    if body.get("temperature") is not None:
        chat.temperature = float(body["temperature"])
    if body.get("max_tokens") is not None:
        chat.max_tokens = int(body["max_tokens"])
    return chat
