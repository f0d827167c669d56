"""The intern's prompt and answer format, shared by training and serving."""

from __future__ import annotations

import json

import pytest

from interns.trainer.prompting import (
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
