"""Times and counts rewritten the way arguments write them (TRAINER_TRAINING__NORMALIZE_VALUES):
the phrasings SGD's users and agents use, and what must be left alone."""

from __future__ import annotations

import json

import pytest

from interns.trainer.examples import Example
from interns.trainer.normalize import (
    normalize_counts,
    normalize_days,
    normalize_times,
    normalize_values,
)
from interns.trainer.prompting import PromptOptions, conversation, encode
from interns.trainer.runtime import InternRuntime
from interns.trainer.training import TrainConfig, tokenize_example, train
from tests.trainer.test_ml_prompting import WordTokenizer, call, weather_request
from tests.trainer.test_ml_training import TINY, weather_example


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at 1:45 pm.", "at 13:45."),
        ("leave at 6:15 p.m. sharp", "leave at 18:15 sharp"),
        ("8:30 am.", "08:30."),
        ("six pm", "18:00"),
        ("6pm", "18:00"),
        ("12 am", "00:00"),
        ("12 pm", "12:00"),
        ("At quarter past 6 in the evening", "At 18:15"),
        ("half past 11 in the morning", "11:30"),
        ("half past 12 in the afternoon", "12:30"),
        ("quarter to 7 pm", "18:45"),
        ('2 o"clock in the afternoon.', "14:00."),
        ("one in the afternoon, to Vegas", "13:00, to Vegas"),
        ("11 at night", "23:00"),
        ("morning 11 next friday", "11:00 next friday"),
        ("afternoon 1:30 on 8th of March", "13:30 on 8th of March"),
        ("At around afternoon 3.", "At around 15:00."),
        ("at noon, not in the afternoon", "at 12:00, not in the afternoon"),
    ],
)
def test_a_time_with_its_part_of_the_day_becomes_a_24_hour_clock(text, expected):
    assert normalize_times(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "at 10:20",  # no part of the day: ambiguous, kept
        "I am 5 minutes away",
        "the 3rd of March",
        "half past 6",
        '{"leaving_time": "10:20"}',
    ],
)
def test_a_time_without_its_part_of_the_day_and_other_numbers_are_left_alone(text):
    assert normalize_times(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("for three persons", "for 3 persons"),
        ("a group of four.", "a group of 4."),
        ("I want four.", "I want 4."),
        ("Two tickets please", "2 tickets please"),
        ("a two-bedroom place", "a 2-bedroom place"),
        ("a one bedroom flat", "a 1 bedroom flat"),
        ("twenty seats", "20 seats"),
    ],
)
def test_number_words_become_digits(text, expected):
    assert normalize_counts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Three Seasons is nice",  # a name
        "Table at Seven.",
        "that one works",
        "no one else",
        "one of them",
        "someone, anyone, phone",
    ],
)
def test_names_and_the_pronoun_one_are_left_alone(text):
    assert normalize_counts(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on March 1st at 5", "on March 1 at 5"),
        ("Mar. 3rd", "Mar. 3"),
        ("the 3rd of March", "the 3 of March"),
        ("from the 2nd of next month", "from the 2 of next month"),
        ("Is it on the 8th.", "Is it on the 8."),
        ("the 22nd, please", "the 22, please"),
    ],
)
def test_day_ordinals_of_dates_lose_their_suffix(text, expected):
    assert normalize_days(text) == expected


@pytest.mark.parametrize(
    "text",
    ["1414 West 4th Street", "the 5th floor", "21st Amendment Brewery", "my 2nd choice", "1st"],
)
def test_street_numbers_names_and_other_ordinals_keep_their_suffix(text):
    assert normalize_days(text) == text


def test_times_are_rewritten_before_counts():
    assert normalize_values("two people at one in the afternoon") == "2 people at 13:00"
    assert normalize_values("two on March 1st at 6 pm") == "2 on March 1 at 18:00"


def booking_request() -> dict:
    request = weather_request("Book two seats at 6:15 in the evening", "Which day?", "Friday")
    request["messages"] += [
        call("Book", {"city": "Paris", "seats": "2"}),
        {"role": "tool", "tool_call_id": "c1", "content": '[{"time": "6:15 pm", "seats": 2}]'},
        {"role": "user", "content": "Make it three"},
    ]
    return request


def test_the_prompt_normalizes_the_turns_only_when_asked_and_never_tool_calls_or_results():
    request = booking_request()
    plain = [turn["content"] for turn in conversation(request)]
    normalized = [turn["content"] for turn in conversation(request, normalize=True)]
    assert plain[0] == "Book two seats at 6:15 in the evening"
    assert normalized[0] == "Book 2 seats at 18:15"
    assert normalized[-1] == "Make it 3"
    # The earlier call and the tool's result are the same either way.
    assert normalized[3:5] == plain[3:5] and "6:15 pm" in normalized[4]
    tokenizer = WordTokenizer()
    assert "18:15" in encode(tokenizer, request, 1000, PromptOptions(normalize_values=True))
    assert "18:15" not in encode(tokenizer, request, 1000)


class CharTokenizer(WordTokenizer):
    """Words for the prompt (WordTokenizer), characters for the answer."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text)}


def test_training_tokenizes_the_normalized_prompt_when_configured():
    example = Example("t", "s", booking_request(), call("Book", {"city": "Paris", "seats": "3"}))
    normalized = tokenize_example(CharTokenizer(), example, TrainConfig(normalize_values=True))
    plain = tokenize_example(CharTokenizer(), example, TrainConfig())
    assert "18:15" in normalized["input_ids"] and "18:15" not in plain["input_ids"]


def test_the_served_intern_normalizes_as_it_was_trained(tmp_path):
    """The prompt settings are saved in intern.json and read back by the runtime; an intern
    saved before they existed is served without them."""
    examples = [weather_example(n) for n in range(2)]
    config = TrainConfig(
        max_steps=1,
        batch_size=2,
        normalize_values=True,
        tool_results_first=True,
        keep_tool_calls=True,
        every_parameter=True,
    )
    model_dir = train(TINY, examples, config, tmp_path)
    runtime = InternRuntime.load(model_dir)
    assert runtime.prompt == PromptOptions(
        tool_lines=False,
        normalize_values=True,
        tool_results_first=True,
        keep_tool_calls=True,
        every_parameter=True,
    )
    description_file = model_dir / "intern.json"
    description = json.loads(description_file.read_text())
    del description["normalize_values"], description["tool_results_first"]
    del description["keep_tool_calls"], description["every_parameter"]
    description_file.write_text(json.dumps(description))
    runtime = InternRuntime.load(model_dir)
    assert runtime.prompt == PromptOptions(tool_lines=False)
