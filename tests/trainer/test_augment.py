"""Value-swap augmentation of the training split: the copies still agree with themselves
(the swapped values in the conversation, the tool calls and results, and the answer), what
is not copied stays, and the same seed gives the same copies."""

from __future__ import annotations

import copy
import json

from interns.trainer.augment import augment, is_copyable, swapped_copies, value_pools
from interns.trainer.examples import Example
from interns.trainer.models import BaseModelSpec
from interns.trainer.prompting import answer_text, conversation
from interns.trainer.training import TrainConfig, train
from tests.conftest import WEATHER_TOOL

TINY = BaseModelSpec("tiny", "config:tiny", "full", "Apache-2.0", 3.2, 2048, 200)


def tool_call(name: str, arguments: dict) -> dict:
    return {
        "id": "c1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def bus_example(n: int, origin: str, destination: str, *, session: str = "") -> Example:
    search = {"from_location": origin, "to_location": destination, "leaving_date": "2019-03-11"}
    results = [{**search, "leaving_time": "07:20", "from_station": f"{origin} Station"}]
    messages = [
        {"role": "user", "content": f"I need a bus to {destination} for 3 on March 11th."},
        {"role": "assistant", "content": "From where?"},
        {"role": "user", "content": f"from {origin.lower()}, please."},
        {"role": "assistant", "tool_calls": [tool_call("FindBus", search)]},
        {"role": "tool", "tool_call_id": "c1", "name": "FindBus", "content": json.dumps(results)},
        {"role": "assistant", "content": f"A 7:20 am bus from {origin} Station. Book it?"},
        {"role": "user", "content": "Yes, book it."},
    ]
    answer = {
        "role": "assistant",
        "tool_calls": [
            tool_call("BuyBusTicket", {**search, "leaving_time": "07:20", "travelers": "3"})
        ],
    }
    return Example(f"t{n}", session or f"s{n}", {"messages": messages, "tools": []}, answer)


def arguments(example: Example) -> dict:
    return json.loads(answer_text(example.answer))["arguments"]


TRAIN = [
    bus_example(0, "Fresno", "Las Vegas"),
    bus_example(1, "San Diego", "Los Angeles"),
    bus_example(2, "Portland", "Seattle"),
]


def test_a_copy_swaps_each_copied_value_everywhere_in_the_conversation_and_the_answer():
    augmented = augment(TRAIN, copies=1, seed=0)
    assert augmented[:3] == TRAIN and len(augmented) == 6
    variant = augmented[3]
    assert variant.session_id == TRAIN[0].session_id and variant.trace_id != TRAIN[0].trace_id
    origin, destination = arguments(variant)["from_location"], arguments(variant)["to_location"]
    assert origin in {"San Diego", "Portland"} and destination in {"Los Angeles", "Seattle"}

    text = json.dumps(variant.request["messages"])
    assert "Fresno" not in text and "fresno" not in text and "Las Vegas" not in text
    turns = [turn["content"] for turn in conversation(variant.request)]
    assert turns[0] == f"I need a bus to {destination} for 3 on March 11th."
    assert turns[2] == f"from {origin.lower()}, please."  # the occurrence's case is kept
    assert f"{origin} Station" in turns[5]
    prior_call = json.loads(
        variant.request["messages"][3]["tool_calls"][0]["function"]["arguments"]
    )
    assert (prior_call["from_location"], prior_call["to_location"]) == (origin, destination)
    result = json.loads(variant.request["messages"][4]["content"])[0]
    assert result["from_station"] == f"{origin} Station" and result["to_location"] == destination


def test_dates_times_and_numbers_are_left_as_they_are():
    variant = augment(TRAIN, copies=1, seed=0)[3]
    assert arguments(variant)["leaving_date"] == "2019-03-11"
    assert arguments(variant)["leaving_time"] == "07:20"
    assert arguments(variant)["travelers"] == "3"
    assert "for 3 on March 11th" in variant.request["messages"][0]["content"]
    assert not any(is_copyable(v) for v in ["2019-03-11", "07:20", "6:15 pm", "3", "True", "ab"])


def test_the_examples_given_are_not_changed():
    before = copy.deepcopy(TRAIN)
    augment(TRAIN, copies=2, seed=0)
    assert before == TRAIN


def test_the_same_seed_gives_the_same_copies():
    assert augment(TRAIN, copies=2, seed=7) == augment(TRAIN, copies=2, seed=7)
    assert augment(TRAIN, copies=0, seed=7) == TRAIN


def test_a_swap_never_makes_the_origin_the_destination():
    for seed in range(20):
        for variant in augment(TRAIN, copies=2, seed=seed)[3:]:
            assert arguments(variant)["from_location"] != arguments(variant)["to_location"]


def test_an_example_without_a_copied_value_gets_no_copy():
    dates_only = Example(
        "d",
        "sd",
        {"messages": [{"role": "user", "content": "Weather on the 2019-03-11?"}]},
        {"role": "assistant", "tool_calls": [tool_call("GetWeather", {"date": "2019-03-11"})]},
    )
    not_in_text = Example(
        "n",
        "sn",
        {"messages": [{"role": "user", "content": "Weather where I am?"}]},
        {"role": "assistant", "tool_calls": [tool_call("GetWeather", {"city": "Paris"})]},
    )
    pools = value_pools([*TRAIN, dates_only, not_in_text])
    assert swapped_copies(dates_only, pools, copies=2, seed=0) == []
    assert swapped_copies(not_in_text, pools, copies=2, seed=0) == []


def test_a_value_is_swapped_as_a_whole_word_only():
    example = Example(
        "w",
        "sw",
        {"messages": [{"role": "user", "content": "Weather in Nice? Nicer than Paris."}]},
        {"role": "assistant", "tool_calls": [tool_call("GetWeather", {"city": "Nice"})]},
    )
    other = Example(
        "o",
        "so",
        {"messages": [{"role": "user", "content": "Weather in Lyon?"}]},
        {"role": "assistant", "tool_calls": [tool_call("GetWeather", {"city": "Lyon"})]},
    )
    variant = augment([example, other], copies=1, seed=0)[2]
    assert variant.request["messages"][0]["content"] == "Weather in Lyon? Nicer than Paris."
    assert arguments(variant) == {"city": "Lyon"}


def weather_example(n: int, city: str) -> Example:
    request = {
        "messages": [{"role": "user", "content": f"Weather in {city}?"}],
        "tools": [WEATHER_TOOL],
    }
    answer = {"role": "assistant", "tool_calls": [tool_call("GetWeather", {"city": city})]}
    return Example(f"t{n}", f"s{n}", request, answer)


def test_training_with_copies_takes_a_step_per_batch_of_the_augmented_split(tmp_path):
    examples = [weather_example(n, city) for n, city in enumerate(["Paris", "Lyon", "Nice"])]
    before = copy.deepcopy(examples)
    config = TrainConfig(epochs=1, batch_size=2, checkpoint_every=100, augment_copies=1)
    seen: list = []
    train(TINY, examples, config, tmp_path, on_progress=seen.append)
    assert [p.step for p in seen] == [1, 2, 3]  # 6 examples, 2 a batch
    assert examples == before


def test_a_call_whose_arguments_do_not_parse_is_kept_as_written():
    example = bus_example(0, "Fresno", "Las Vegas")
    broken = {"id": "c2", "type": "function", "function": {"name": "Note", "arguments": "{oops"}}
    example.answer["tool_calls"].append(broken)
    [variant] = augment([example, *TRAIN[1:]], copies=1, seed=0)[3:4]
    calls = variant.answer["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"])["from_location"] != "Fresno"
    assert calls[1] == broken
