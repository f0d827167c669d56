"""An HTTP body becomes the same gRPC input as the gRPC API's own conversion gives: the
HTTP transport builds it straight from the parsed body, in place, for speed."""

from __future__ import annotations

import json

import pytest

from interns.api.v1 import chat_pb2
from interns.common.chat import input_from_openai
from interns.gateway.openai_format import ChatCompletionBody
from tests.conftest import openai_log_line
from tests.gateway.test_trace_events import rich_request


def normal_json(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True) if text else ""


def normalized(chat: chat_pb2.ChatCompletionInput) -> chat_pb2.ChatCompletionInput:
    """`chat` with its JSON texts (tool schemas, response schema) written one way, and no
    empty response format: the two conversions differ only in spacing and in that."""
    normal = chat_pb2.ChatCompletionInput()
    normal.CopyFrom(chat)
    for tool in normal.tools:
        tool.function.parameters_json = normal_json(tool.function.parameters_json)
    fmt = normal.response_format
    fmt.json_schema_json = normal_json(fmt.json_schema_json)
    if fmt == chat_pb2.ResponseFormat():
        normal.ClearField("response_format")
    return normal


def bodies() -> list[dict]:
    plain = openai_log_line("Oslo", "s")["request"]
    no_tools = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    sampled = {**plain, "temperature": 0.0, "max_completion_tokens": 9, "tool_choice": "auto"}
    return [plain, rich_request(), no_tools, sampled]


@pytest.mark.parametrize("body", bodies(), ids=["plain", "rich", "text-parts", "sampled"])
def test_the_http_body_gives_the_grpc_input_of_the_same_request(body):
    built = ChatCompletionBody.parse(json.dumps(body).encode()).chat_input()
    expected = input_from_openai(
        {
            **body,
            "messages": [
                {**m, "content": "hi"} if isinstance(m.get("content"), list) else m
                for m in body["messages"]
            ],
            "max_tokens": body.get("max_tokens", body.get("max_completion_tokens")),
        }
    )
    assert normalized(built) == normalized(expected)
    assert len(built.messages) == len(body["messages"])
