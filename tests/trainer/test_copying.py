"""Copied argument values: an intern may write, for an argument it learned to copy, only a
span of its prompt."""

from __future__ import annotations

import json

from interns.trainer.constrained import answer_schema
from interns.trainer.copying import allowed_values, copied_arguments, spans, value_kind
from interns.trainer.prompting import encode, prompt_budget
from interns.trainer.runtime import InternRuntime
from interns.trainer.training import TrainConfig, train
from tests.trainer.test_constrained import BUS, request, tiny  # noqa: F401 (fixture)
from tests.trainer.test_ml_training import TINY, weather_example

RESERVE = {
    "type": "function",
    "function": {
        "name": "ReserveRestaurant",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "date": {"type": "string"},
                "party_size": {"type": "string", "enum": ["1", "2", "3", "4"]},
                "category": {"type": "string"},
            },
        },
    },
}


def test_spans_are_the_prompts_word_runs_as_written_capitalised_and_without_end_punctuation():
    found = spans('Book vietnamese food in San Jose. Earlier: {"city":"Los Gatos"}')
    assert {"San Jose", "San Jose.", "vietnamese", "Vietnamese", "Los Gatos"} <= found
    assert "Vietnamese Food In San Jose" in found  # up to eight words, each capitalised
    assert "San Francisco" not in found and "Jose. Earlier" in found


def _example(text: str, city: str, date: str, party: str = "2", category: str | None = None):
    arguments = {"city": city, "date": date, "party_size": party}
    if category:
        arguments["category"] = category
    return ({"tools": [RESERVE]}, text, "ReserveRestaurant", arguments)


def test_an_argument_is_copied_when_its_value_stands_in_the_prompt_often_enough():
    cities = ["San Jose", "Fremont", "Santa Rosa", "Napa", "Concord", "Milpitas"]
    examples = [
        _example(f"a table for 2 in {city} on Friday", city, f"2019-03-0{n + 1}")
        for n, city in enumerate(cities)
    ]
    # One city the expert knew from elsewhere: 6 of 7 copied (0.86).
    examples.append(_example("a table for 2, same place as before", "Sunnyvale", "2019-03-08"))
    assert copied_arguments(examples, min_share=0.8) == {
        "ReserveRestaurant": {"city": "capitalized", "party_size": "digits:"}
    }
    # Dates are computed, never copied; the party of 2 stands in every prompt (an enum
    # argument is copied like any other); too few categories.
    assert copied_arguments(examples, min_share=0.9) == {
        "ReserveRestaurant": {"party_size": "digits:"}
    }
    # "thai" is the category Thai; but four examples are too few to tell. No prompt
    # writes the party size here: it is not copied.
    thai = [_example(f"thai in {city}", city, "2019-03-01", category="Thai") for city in cities]
    assert copied_arguments(thai[:5], min_share=0.9) == {
        "ReserveRestaurant": {"category": "capitalized", "city": "capitalized"}
    }
    assert copied_arguments(thai[:4], min_share=0.9) == {}


def test_a_copied_argument_takes_only_values_from_the_prompt_whatever_the_weights(tiny):  # noqa: F811
    model, tokenizer = tiny
    requests = [request(f"I need a bus for {n} people from Fresno to Reno") for n in range(3)]
    copied = {"FindBus": ["from_location", "to_location"]}
    runtime = InternRuntime(model, tokenizer, 256, 96, copied_arguments=copied)
    free = InternRuntime(model, tokenizer, 256, 96)
    copied_values, free_values = set(), set()
    for (text, _), (free_text, _), one in zip(
        runtime.generate(requests), free.generate(requests), requests, strict=True
    ):
        prompt = tokenizer.decode(
            encode(tokenizer, one, prompt_budget(256, 96)), skip_special_tokens=True
        )
        for answer, values in ((text, copied_values), (free_text, free_values)):
            payload = json.loads(answer)
            if payload["name"] == "FindBus":
                for argument in copied["FindBus"]:
                    if argument in payload["arguments"]:
                        values.add((payload["arguments"][argument], prompt))
    assert copied_values, "no FindBus call to check"
    assert all(value in spans(prompt) for value, prompt in copied_values), copied_values
    # Random weights left free write what no prompt holds.
    assert not all(value in spans(prompt) for value, prompt in free_values)


def test_allowed_values_are_the_prompts_spans_for_each_copied_argument():
    copied = {"FindBus": ["from_location", "to_location"]}  # as recorded before kinds
    allowed = allowed_values(copied, "a bus from Fresno")
    assert allowed is not None and set(allowed["FindBus"]) == {"from_location", "to_location"}
    assert "Fresno" in allowed["FindBus"]["from_location"]
    assert allowed_values({}, "a bus from Fresno") is None


def test_a_copied_argument_takes_only_spans_of_the_kind_its_values_had():
    assert value_kind(["18:15", "09:30"]) == "digits::"
    assert value_kind(["2", "14"]) == "digits:"
    assert value_kind(["2", "2.5"]) == "digits"
    assert value_kind(["San Jose", "71 Saint Peter"]) == "capitalized"
    assert value_kind(["San Jose", "iPhone"]) == "any"
    prompt = "on 2019-03-09 at 12:15 for 2 at sino in San Jose"
    copied = {"Reserve": {"time": "digits::", "party": "digits:", "place": "capitalized"}}
    allowed = allowed_values(copied, prompt)["Reserve"]
    assert "12:15" in allowed["time"] and "2019-03-09" not in allowed["time"]
    assert set(allowed["time"]) == {"12:15"}
    assert "2" in allowed["party"] and "12:15" not in allowed["party"]
    assert "San Jose" in allowed["place"] and "Sino" in allowed["place"]
    assert "sino" not in allowed["place"] and "at sino" not in allowed["place"]


def test_a_trained_intern_records_what_it_copies_and_is_served_with_it(tmp_path):
    """Paris stands in every prompt: the city is copied; unset, nothing is recorded."""
    examples = [weather_example(n) for n in range(6)]
    config = TrainConfig(max_steps=1, batch_size=2, copy_min_share=0.9)
    model_dir = train(TINY, examples, config, tmp_path / "on")
    copied = {"GetWeather": {"city": "capitalized"}}
    assert json.loads((model_dir / "intern.json").read_text())["copied_arguments"] == copied
    assert InternRuntime.load(model_dir).copied_arguments == copied
    plain = train(TINY, examples, TrainConfig(max_steps=1, batch_size=2), tmp_path / "off")
    assert InternRuntime.load(plain).copied_arguments == {}


def test_a_copied_enum_argument_takes_the_value_the_prompt_writes(tiny):  # noqa: F811
    model, tokenizer = tiny
    bus = json.loads(json.dumps(BUS))
    bus["function"]["parameters"]["required"].append("travelers")
    requests = [
        {"messages": [{"role": "user", "content": f"a bus for {n} from Fresno"}], "tools": [bus]}
        for n in (1, 2, 3)
    ]
    copied = {"FindBus": {"travelers": "digits:"}}
    runtime = InternRuntime(model, tokenizer, 256, 96, copied_arguments=copied)
    written = [json.loads(text)["arguments"]["travelers"] for text, _ in runtime.generate(requests)]
    assert written == ["1", "2", "3"]
    # A prompt that writes none of the enum's values leaves the whole enum open.
    schema = answer_schema(requests[0], {"FindBus": {"travelers": ["Fresno", "7"]}})
    assert schema["properties"]["arguments"]["properties"]["travelers"]["enum"] == ["1", "2", "3"]
    schema = answer_schema(requests[0], {"FindBus": {"travelers": ["3", "1", "bus"]}})
    assert schema["properties"]["arguments"]["properties"]["travelers"]["enum"] == ["1", "3"]
