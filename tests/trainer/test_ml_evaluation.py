"""Scores of an intern's answers against the expert's."""

from __future__ import annotations

import json

import pytest

from interns.trainer.evaluation import calibrate, evaluate, score_answers
from interns.trainer.examples import Example


def call(name: str, **arguments) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "tool_calls": [{"id": "c", "type": "function", "function": function}],
    }


def example(answer: dict, n: int = 0) -> Example:
    return Example(f"t{n}", f"s{n}", {"messages": [{"role": "user", "content": "hi"}]}, answer)


def test_tool_calls_are_scored_exactly_without_dates_and_per_argument():
    expected = [
        example(call("GetWeather", city="Paris", date="2019-03-01"), 0),
        example(call("GetWeather", city="Rome"), 1),
        example(call("FindBus", origin="Oslo", travelers="2"), 2),
    ]
    answers = [
        call("GetWeather", city="Paris", date="2019-03-05"),  # wrong date only
        call("GetWeather", city=" Rome "),  # exact (trimmed)
        call("FindHotel", origin="Oslo", travelers="2"),  # wrong tool
    ]
    scores = score_answers(expected, answers, "tool_call")
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["exact_match_without_dates"] == pytest.approx(2 / 3)
    assert scores["name_accuracy"] == pytest.approx(2 / 3)
    # Paris: city right of (city, date); Rome: 1 of 1; wrong tool: 0 of 2.
    assert scores["argument_accuracy"] == pytest.approx(2 / 5)


def test_a_text_answer_for_a_tool_call_scores_nothing():
    scores = score_answers(
        [example(call("GetWeather", city="Paris"))], [{"content": "Paris"}], "tool_call"
    )
    assert scores["exact_match"] == 0.0 and scores["argument_accuracy"] == 0.0


def test_json_answers_compare_parsed_and_text_by_similarity():
    json_examples = [
        example({"content": '{"a": 1, "b": [2]}'}),
        example({"content": '{"a": 1}'}, 1),
    ]
    got = [{"content": '{"b":[2],"a":1}'}, {"content": "not json"}]
    assert score_answers(json_examples, got, "json") == {"json_equal": 0.5}
    text = score_answers(
        [example({"content": "It is sunny"})], [{"content": "It is sunny!"}], "text"
    )
    assert 0.9 < text["text_similarity"] < 1.0


class EchoIntern:
    """Answers every request with the answers it was given, in order: a stand-in model."""

    def __init__(self, answers):
        self.answers = list(answers)

    def answer(self, requests):
        return [self.answers.pop(0) for _ in requests]


def test_evaluate_reports_scores_latency_and_the_failures():
    expected = [
        example(call("GetWeather", city=c), i) for i, c in enumerate(["Paris", "Rome", "Oslo"])
    ]
    runtime = EchoIntern(
        [call("GetWeather", city="Paris"), call("GetWeather", city="Rome"), {"content": "?"}]
    )
    report = evaluate(runtime, expected, "tool_call", batch_size=2)
    assert report.n == 3
    assert report.scores["exact_match"] == pytest.approx(2 / 3)
    assert [f["trace_id"] for f in report.failures] == ["t2"]
    assert report.latency_ms_p50 >= 0.0


class ConfidentIntern(EchoIntern):
    """Echoes its answers with the given confidences."""

    def __init__(self, answers, confidences):
        super().__init__(
            [{**a, "confidence": c} for a, c in zip(answers, confidences, strict=True)]
        )


def test_calibration_keeps_the_most_confident_answers_that_are_right_often_enough():
    confidences = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    correct = [True, True, True, False, True, False]
    assert calibrate(confidences, correct, 0.95) == 0.7
    assert calibrate(confidences, correct, 0.8) == 0.5
    assert calibrate(confidences, [False] * 6, 0.5) is None
    # Fewer than three kept answers prove nothing.
    assert calibrate([0.9, 0.1], [True, False], 0.95) is None


def test_evaluate_reports_a_threshold_and_cross_fitted_coverage():
    cities = ["Paris", "Rome", "Oslo", "Lima", "Kyoto", "Quito", "Cairo", "Bern"]
    expected = [example(call("GetWeather", city=c), i) for i, c in enumerate(cities)]
    # Confident answers are right, unsure ones wrong.
    answers = [call("GetWeather", city=c if i < 6 else "Nowhere") for i, c in enumerate(cities)]
    confidences = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.2, 0.1]
    report = evaluate(ConfidentIntern(answers, confidences), expected, "tool_call")
    assert report.defer_below == 0.94
    assert report.scores["exact_match"] == 0.75
    assert report.scores["served_exact_match"] == 1.0
    # Each half judged by the other's threshold (0.95 and 0.94): 2 + 3 kept of 8.
    assert report.scores["coverage"] == 0.625


def test_ignoring_dates_calibrates_on_answers_right_but_for_their_dates():
    """Traffic that cannot give the expert's dates (SGD's dialogues never say which day it
    is): with the gate's ignore_dates the threshold and the served answers are judged
    without dates, as the gate's exact match is; without it, no answer counts as right."""
    cities = ["Paris", "Rome", "Oslo", "Lima", "Kyoto", "Quito", "Cairo", "Bern"]
    expected = [
        example(call("FindFlight", city=c, date=f"2019-03-0{i + 1}"), i)
        for i, c in enumerate(cities)
    ]
    # Every date guessed wrong; the city right on the confident six.
    answers = [
        call("FindFlight", city=c if i < 6 else "Nowhere", date="2019-01-01")
        for i, c in enumerate(cities)
    ]
    confidences = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.2, 0.1]
    strict = evaluate(ConfidentIntern(answers, confidences), expected, "tool_call")
    assert strict.defer_below is None
    assert strict.scores["coverage"] == 0.0
    lenient = evaluate(
        ConfidentIntern(answers, confidences), expected, "tool_call", ignore_dates=True
    )
    assert lenient.defer_below == 0.94
    assert lenient.scores["served_exact_match"] == 1.0
    assert lenient.scores["coverage"] == 0.625
    assert lenient.scores["exact_match"] == 0.0  # the reported scores do not change
    assert lenient.scores["exact_match_without_dates"] == 0.75
