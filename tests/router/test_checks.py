"""An intern's answer is returned only if it is a valid answer to the request."""

from __future__ import annotations

import json

import pytest

from interns.router.checks import CheckFailed, check_answer
from interns.router.compare import compare_answers
from tests.conftest import WEATHER_TOOL

REQUEST = {"messages": [{"role": "user", "content": "weather?"}], "tools": [WEATHER_TOOL]}


def call(name: str, arguments) -> dict:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": name, "arguments": raw}}
        ]
    }


def test_a_valid_tool_call_passes():
    check_answer(REQUEST, call("GetWeather", {"city": "Lima"}))


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (call("GetStockPrice", {"city": "Lima"}), "does not offer"),
        (call("GetWeather", "{city: Lima"), "not JSON"),
        (call("GetWeather", "[1, 2]"), "not a JSON object"),
        (call("GetWeather", {"date": "2019-03-01"}), "schema"),
        (call("GetWeather", {"city": 42}), "schema"),
        ({"content": ""}, "neither text nor a tool call"),
    ],
)
def test_an_invalid_tool_call_fails_with_the_reason(message, why):
    with pytest.raises(CheckFailed, match=why):
        check_answer(REQUEST, message)


def test_a_json_response_format_must_parse_and_match_its_schema():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {
        "messages": [],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    check_answer(body, {"content": '{"n": 3}'})
    with pytest.raises(CheckFailed, match="not the JSON"):
        check_answer(body, {"content": "n is 3"})
    with pytest.raises(CheckFailed, match="schema"):
        check_answer(body, {"content": '{"n": "three"}'})


def test_agreement_is_exact_and_the_score_gives_partial_credit():
    expert = call("GetWeather", {"city": "Lima", "date": "2019-03-01"})
    assert compare_answers(expert, call("GetWeather", {"date": "2019-03-01", "city": "Lima"})) == (
        True,
        1.0,
    )
    agree, score = compare_answers(expert, call("GetWeather", {"city": "Lima", "date": "x"}))
    assert not agree and score == 0.5
    assert compare_answers(expert, call("Other", {})) == (False, 0.0)
    assert compare_answers(expert, {"error": "circuit open"}) == (False, 0.0)
