"""Constrained decoding: whatever the weights, an intern's answer is one the request allows."""

from __future__ import annotations

import json

import pytest

from interns.trainer.constrained import answer_schema
from interns.trainer.models import BaseModelSpec, load_base
from interns.trainer.prompting import PromptOptions, parse_answer
from interns.trainer.runtime import InternRuntime

TINY = BaseModelSpec("tiny", "config:tiny", "full", "Apache-2.0", 3.2, 2048, 200)

BUS = {
    "type": "function",
    "function": {
        "name": "FindBus",
        "parameters": {
            "type": "object",
            "properties": {
                # Short values: even random weights must end within the answer budget.
                "to_location": {"type": "string", "maxLength": 8},
                "from_location": {"type": "string", "maxLength": 8},
                "travelers": {"type": "string", "enum": ["1", "2", "3"]},
            },
            "required": ["from_location", "to_location"],
        },
    },
}
HOTEL = {
    "type": "function",
    "function": {
        "name": "ReserveHotel",
        "parameters": {
            "type": "object",
            "properties": {"place_name": {"type": "string", "maxLength": 8}},
            "required": ["place_name"],
        },
    },
}


@pytest.fixture(scope="module")
def tiny():
    """A model with random weights (built from a config) and SmolLM2's tokenizer."""
    return load_base(TINY)


def request(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}], "tools": [BUS, HOTEL]}


def test_the_answer_schema_offers_exactly_the_requests_tools_with_sorted_arguments():
    schema = answer_schema(request("a bus to Fresno"))
    variants = {v["properties"]["name"]["const"]: v for v in schema["anyOf"]}
    assert set(variants) == {"FindBus", "ReserveHotel"}
    bus = variants["FindBus"]["properties"]["arguments"]
    assert list(bus["properties"]) == ["from_location", "to_location", "travelers"]
    assert bus["additionalProperties"] is False
    assert answer_schema({"messages": []}) is None
    assert answer_schema({"messages": [], "response_format": {"type": "json_object"}}) == {
        "type": "object"
    }


def test_an_untrained_model_still_answers_valid_tool_calls_when_constrained(tiny):
    model, tokenizer = tiny
    requests = [request(f"I need a bus for {n} people to Fresno") for n in range(4)]
    constrained = InternRuntime(model, tokenizer, 256, 96)
    for text, confidence in constrained.generate(requests):
        payload = json.loads(text)
        assert payload["name"] in {"FindBus", "ReserveHotel"}
        allowed = {"FindBus": {"from_location", "to_location", "travelers"}}.get(
            payload["name"], {"place_name"}
        )
        assert set(payload["arguments"]) <= allowed
        assert payload["arguments"].get("travelers", "1") in {"1", "2", "3"}
        assert all(len(value) <= 8 for value in payload["arguments"].values())
        assert 0.0 < confidence <= 1.0
    # The same random weights without the grammar write no valid call at all.
    free = InternRuntime(model, tokenizer, 256, 96, constrained=False)
    assert not any(
        parse_answer(text, requests[0]).get("tool_calls") for text, _ in free.generate(requests)
    )


def test_with_every_parameter_the_answer_writes_each_parameter_in_order_or_null(tiny):
    model, tokenizer = tiny
    requests = [request(f"I need a bus for {n} people to Fresno") for n in range(4)]
    options = PromptOptions(every_parameter=True)
    runtime = InternRuntime(model, tokenizer, 256, 96, prompt=options)
    for (text, _), one in zip(runtime.generate(requests), requests, strict=True):
        payload = json.loads(text)
        declared = {"FindBus": ["from_location", "to_location", "travelers"]}.get(
            payload["name"], ["place_name"]
        )
        assert list(payload["arguments"]) == declared
        assert payload["arguments"].get("travelers") in {None, "1", "2", "3"}
        served = parse_answer(text, one, every_parameter=True)["tool_calls"][0]["function"]
        assert None not in json.loads(served["arguments"]).values()
    schema = answer_schema(requests[0], every_parameter=True)
    bus = next(v for v in schema["anyOf"] if v["properties"]["name"]["const"] == "FindBus")
    arguments = bus["properties"]["arguments"]
    assert arguments["required"] == ["from_location", "to_location", "travelers"]
    assert {"type": "null"} in arguments["properties"]["travelers"]["anyOf"]


def test_an_intern_marks_the_answers_below_its_threshold_as_deferred(tiny):
    model, tokenizer = tiny
    requests = [request("a bus to Fresno")]
    [(_, confidence)] = InternRuntime(model, tokenizer, 256, 96).generate(requests)
    unsure = InternRuntime(model, tokenizer, 256, 96, defer_below=confidence * 2)
    sure = InternRuntime(model, tokenizer, 256, 96, defer_below=confidence / 2)
    assert unsure.answer(requests)[0]["defer"] is True
    answer = sure.answer(requests)[0]
    assert "defer" not in answer and answer["tool_calls"]
