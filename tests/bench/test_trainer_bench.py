"""bench-trainer's bound on copying: the held-out calls whose copied values all stand in the
intern's prompt."""

from __future__ import annotations

import json

from interns.bench.trainer import values_in_prompt
from interns.trainer.examples import Example
from interns.trainer.training import TrainConfig
from tests.trainer.test_ml_prompting import WordTokenizer


class DecodingWordTokenizer(WordTokenizer):
    def decode(self, ids, **kwargs):
        return " ".join(ids)


def search(said: str, arguments: dict, turns: int = 1) -> Example:
    messages = [{"role": "user", "content": f"old turn {n}"} for n in range(turns)]
    messages.append({"role": "user", "content": said})
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "Find", "arguments": json.dumps(arguments)},
    }
    answer = {"role": "assistant", "tool_calls": [call]}
    return Example("t", "s", {"messages": messages, "tools": []}, answer)


def test_a_call_counts_when_every_copied_value_is_in_the_prompt():
    config = TrainConfig(max_length=400, answer_tokens=96)
    copied = search("Thai food in San Jose", {"category": "Thai", "city": "San Jose"})
    # Dates, numbers and booleans are not copied values: they do not count against it.
    settled = search(
        "Thai for 2 in Oslo", {"city": "Oslo", "date": "2019-03-01", "seats": "2", "ok": "True"}
    )
    inferred = search("somewhere reasonably priced in Oslo", {"city": "Oslo", "price": "moderate"})
    assert values_in_prompt(DecodingWordTokenizer(), [copied, settled], config) == 1.0
    assert (
        values_in_prompt(DecodingWordTokenizer(), [copied, settled, inferred, inferred], config)
        == 0.5
    )


def test_a_value_said_in_a_turn_the_prompt_budget_dropped_does_not_count():
    example = search("there, please", {"city": "Lima"}, turns=0)
    example.request["messages"].insert(0, {"role": "user", "content": "I am in Lima " + "x " * 50})
    assert values_in_prompt(DecodingWordTokenizer(), [example], TrainConfig(max_length=400)) == 1.0
    assert (
        values_in_prompt(
            DecodingWordTokenizer(), [example], TrainConfig(max_length=120, answer_tokens=96)
        )
        == 0.0
    )
