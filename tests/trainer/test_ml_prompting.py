"""The intern's prompt and answer format, shared by training and serving."""

from __future__ import annotations

import json

import pytest

from interns.trainer.prompting import (
    PromptOptions,
    answer_text,
    encode,
    parse_answer,
    prompt_messages,
    tool_line,
)
from tests.conftest import WEATHER_TOOL

ENUM_TOOL = {
    "type": "function",
    "function": {
        "name": "Book",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "seats": {"enum": ["1", "2"]}},
        },
    },
}


def weather_request(*turns: str) -> dict:
    roles = ["user", "assistant"]
    return {
        "messages": [
            {"role": "system", "content": "You are a weather agent."},
            *({"role": roles[i % 2], "content": text} for i, text in enumerate(turns)),
        ],
        "tools": [WEATHER_TOOL, ENUM_TOOL],
    }


def call(name: str, arguments: dict) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "tool_calls": [{"id": "c1", "type": "function", "function": function}],
    }


def test_the_tool_line_lists_parameters_and_allowed_values():
    assert tool_line(WEATHER_TOOL) == "GetWeather(city, date)"
    assert tool_line(ENUM_TOOL) == "Book(city, seats=1|2)"


def test_the_prompt_drops_the_agents_system_text_and_keeps_the_turns_in_order():
    messages = prompt_messages(weather_request("Weather in Paris?", "Which day?", "Today"))
    assert messages[0]["role"] == "system"
    assert "GetWeather(city, date)" in messages[0]["content"]
    assert "weather agent" not in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["Weather in Paris?", "Which day?", "Today"]


def test_a_tool_call_answer_round_trips_through_text():
    request = weather_request("Weather in Paris?")
    expert = call("GetWeather", {"date": "2019-03-01", "city": "Paris"})
    text = answer_text(expert)
    assert text.startswith('{"name":"GetWeather"')
    parsed = parse_answer(text, request)
    function = parsed["tool_calls"][0]["function"]
    assert function["name"] == "GetWeather"
    assert json.loads(function["arguments"]) == {"city": "Paris", "date": "2019-03-01"}


def test_the_every_parameter_layout_writes_each_parameter_and_reads_nulls_as_absent():
    request = weather_request("A table in Paris, please.")
    expert = call("Book", {"city": "Paris"})
    text = answer_text(expert, request)
    assert text == '{"name":"Book","arguments":{"city":"Paris","seats":null}}'
    parsed = parse_answer(text, request, every_parameter=True)
    assert json.loads(parsed["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    # The compact layout (the default) writes only the given arguments and keeps a null.
    assert answer_text(expert) == '{"name":"Book","arguments":{"city":"Paris"}}'
    kept = parse_answer(text, request)
    assert json.loads(kept["tool_calls"][0]["function"]["arguments"])["seats"] is None
    # An argument the tool does not declare is kept; a tool the request lacks adds nothing.
    odd = answer_text(call("Book", {"city": "Paris", "note": "x"}), request)
    assert json.loads(odd)["arguments"] == {"city": "Paris", "note": "x", "seats": None}
    assert answer_text(call("Fly", {"to": "Oslo"}), request).endswith('{"to":"Oslo"}}')


@pytest.mark.parametrize("text", ["Sunny in Paris.", '{"name": 3}', '{"name": "GetWeather", '])
def test_an_answer_that_is_not_a_call_comes_back_as_text(text):
    assert parse_answer(text, weather_request("Weather in Paris?")) == {
        "role": "assistant",
        "content": text.strip(),
    }


class WordTokenizer:
    """One token per word of the rendered chat: enough to test the prompt budget."""

    def apply_chat_template(self, messages, **kwargs):
        text = " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"
        return text.split()


def test_a_long_conversation_loses_its_oldest_turns_and_keeps_the_tools_and_last_turn():
    request = weather_request(
        "I need the weather for Paris", "Which day?", "Friday", "Anything else?", "No"
    )
    tokenizer = WordTokenizer()
    full = encode(tokenizer, request, 1000)
    assert "Paris" in " ".join(full)
    trimmed = " ".join(encode(tokenizer, request, len(full) - 3))
    assert "Paris" not in trimmed and "Which day?" in trimmed
    tight = " ".join(encode(tokenizer, request, len(full) - 15))
    assert tight.startswith("<system>") and tight.endswith("<user> No <assistant>")
    assert "Friday" not in tight and "GetWeather(city, date)" in tight
    assert len(encode(tokenizer, request, 5)) == 5


def test_over_budget_the_tool_results_can_go_before_the_oldest_turns():
    request = weather_request("I need the weather for Paris", "Which day?", "Friday")
    request["messages"] += [
        call("GetWeather", {"city": "Paris", "date": "Friday"}),
        {"role": "tool", "tool_call_id": "c1", "content": "sunny " * 20},
        {"role": "assistant", "content": "Sunny. Anything else?"},
        {"role": "tool", "tool_call_id": "c2", "content": "windy " * 5},
        {"role": "user", "content": "And tomorrow?"},
    ]
    tokenizer = WordTokenizer()
    results_go_first = PromptOptions(tool_results_first=True)
    full = encode(tokenizer, request, 1000, results_go_first)
    assert encode(tokenizer, request, 1000) == full
    budget = len(full) - 10
    oldest_first = " ".join(encode(tokenizer, request, budget))
    assert "weather for Paris" not in oldest_first and "sunny" in oldest_first
    results_first = " ".join(encode(tokenizer, request, budget, results_go_first))
    assert "sunny" not in results_first and "windy" in results_first
    assert "I need the weather for Paris" in results_first
    # Still over budget without any tool result: then the oldest turns go.
    tight = " ".join(encode(tokenizer, request, len(full) - 40, results_go_first))
    assert "sunny" not in tight and "windy" not in tight and "weather for Paris" not in tight
    assert tight.endswith("<user> And tomorrow? <assistant>")


def test_over_budget_the_agents_earlier_tool_calls_can_go_last():
    request = weather_request("I need the weather for Paris", "Which day?", "Friday")
    request["messages"] += [
        call("GetWeather", {"city": "Paris", "date": "Friday"}),
        {"role": "tool", "tool_call_id": "c1", "content": "sunny " * 20},
        {"role": "assistant", "content": "Sunny. Anything else?"},
        {"role": "user", "content": "And tomorrow in the same city?"},
    ]
    tokenizer = WordTokenizer()
    calls_go_last = PromptOptions(tool_results_first=True, keep_tool_calls=True)
    full = encode(tokenizer, request, 1000, calls_go_last)
    assert encode(tokenizer, request, 1000) == full
    # The tool result (23 words) and then the three turns before the call (12) and more.
    budget = len(full) - 36
    oldest = " ".join(encode(tokenizer, request, budget, PromptOptions(tool_results_first=True)))
    assert "Paris" not in oldest and "sunny" not in oldest
    kept = " ".join(encode(tokenizer, request, budget, calls_go_last))
    assert '"city":"Paris"' in kept and "sunny" not in kept
    assert "weather for Paris" not in kept and "Anything else?" not in kept
    assert kept.endswith("<user> And tomorrow in the same city? <assistant>")
    # With nothing but tool calls left to drop, the oldest call goes.
    tight = " ".join(encode(tokenizer, request, 12, calls_go_last))
    assert "Paris" not in tight and tight.endswith("<assistant>")
