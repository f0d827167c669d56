"""The gateway's trace event is, byte for byte, the `TraceRecorded` the collector expects."""

from __future__ import annotations

import grpc
import pytest

from interns.api.v1 import chat_pb2
from interns.common.chat import input_from_openai, input_to_openai, message_to_openai
from interns.common.events import RouteRecord, TraceRecorded, TraceRequest, TraceResponse
from interns.gateway.router_client import RouteFailed
from interns.gateway.trace_events import PendingTrace
from tests.conftest import openai_log_line

METADATA = chat_pb2.RequestMetadata(tenant_id="acme", agent_id="bot", session_id="s-1")


def rich_request() -> dict:
    body = openai_log_line("Lima", "s")["request"]
    body["messages"].append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "GetWeather", "arguments": '{"city": "Lima"}'},
                }
            ],
        }
    )
    body["messages"].append({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    body["messages"].append({"role": "user", "name": "ana", "content": "und morgen? é"})
    body["tool_choice"] = {"type": "function", "function": {"name": "GetWeather"}}
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": "w", "schema": {}}}
    body["temperature"] = 0.7
    body["max_tokens"] = 64
    return body


def as_model(trace: PendingTrace, chat, output, route, error) -> TraceRecorded:
    """The same call's event built the way the contract defines it, with the trace's own
    event id and time."""
    sent = TraceRecorded.model_validate_json(trace.to_bytes())
    response = None
    if output is not None:
        response = TraceResponse(
            model=output.model,
            message=message_to_openai(output.message),
            finish_reason=output.finish_reason,
            prompt_tokens=output.usage.prompt_tokens,
            completion_tokens=output.usage.completion_tokens,
        )
    return TraceRecorded(
        event_id=sent.event_id,
        occurred_at=sent.occurred_at,
        trace_id="t-1",
        tenant_id=METADATA.tenant_id,
        agent_id=METADATA.agent_id,
        session_id=METADATA.session_id,
        request=TraceRequest.model_validate(input_to_openai(chat, default_model="")),
        response=response,
        route=RouteRecord(
            target="intern" if route is not None and route.target == "intern" else "expert",
            model=route.model if route else "",
            model_version=route.model_version if route else 0,
            task_id=route.task_id if route else "",
            reason=route.reason if route else "",
        ),
        status="error" if error is not None else "ok",
        error=f"{error.code.name}: {error.details}" if error is not None else "",
        latency_ms=12.5,
        cost_usd=route.cost_usd if route else 0.0,
    )


TOOL_ANSWER = chat_pb2.ChatCompletionOutput(
    id="x",
    model="gpt",
    message=chat_pb2.ChatMessage(
        role="assistant",
        tool_calls=[
            chat_pb2.ToolCall(
                id="c2", function=chat_pb2.FunctionCall(name="GetWeather", arguments="{}")
            )
        ],
    ),
    finish_reason="tool_calls",
    usage=chat_pb2.Usage(prompt_tokens=10, completion_tokens=3, total_tokens=13),
)
TEXT_ANSWER = chat_pb2.ChatCompletionOutput(
    model="intern-1", message=chat_pb2.ChatMessage(role="assistant", content="ok")
)
INTERN = chat_pb2.RouteDecision(
    target="intern", model="intern-1", model_version=3, task_id="t", reason="full", cost_usd=0.0
)
EXPERT = chat_pb2.RouteDecision(target="expert", model="gpt", reason="no task", cost_usd=0.0021)


@pytest.mark.parametrize(
    ("body", "output", "route", "error"),
    [
        (rich_request(), TOOL_ANSWER, EXPERT, None),
        (openai_log_line("Oslo", "s")["request"], TEXT_ANSWER, INTERN, None),
        (
            {"messages": [{"role": "user", "content": "hi"}]},
            None,
            None,
            RouteFailed(grpc.StatusCode.UNAVAILABLE, "expert unreachable"),
        ),
    ],
    ids=["tool-call-answer", "intern-answer", "router-error"],
)
def test_the_event_is_the_models_bytes(body, output, route, error):
    chat = input_from_openai(body)
    trace = PendingTrace("t-1", METADATA, chat, 12.5, output, route, error)
    assert trace.to_bytes() == as_model(trace, chat, output, route, error).to_bytes()
    assert trace.key() == b"s-1"
    TraceRecorded.model_validate_json(trace.to_bytes())
