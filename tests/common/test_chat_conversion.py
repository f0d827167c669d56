"""An OpenAI request survives the trip through the gRPC messages unchanged."""

from __future__ import annotations

from interns.common.chat import input_from_openai, input_to_openai, output_from_openai
from tests.conftest import openai_log_line


def test_an_openai_request_round_trips_through_grpc():
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
    body["tool_choice"] = {"type": "function", "function": {"name": "GetWeather"}}
    body["response_format"] = {"type": "json_object"}
    body["temperature"] = 0.5
    body["max_tokens"] = 64
    assert input_to_openai(input_from_openai(body), default_model="x") == body


def test_a_response_keeps_its_tool_calls_and_usage():
    response = openai_log_line("Oslo", "s")["response"]
    output = output_from_openai(response)
    assert output.message.tool_calls[0].function.name == "GetWeather"
    assert output.finish_reason == "tool_calls"
    assert output.usage.total_tokens == 42
