"""Deciding whether a signature holds several tasks, and the matcher that tells them
apart: split only when the expert's answers differ and the requests follow them."""

from __future__ import annotations

import numpy as np
import pytest

from interns.common.task_matcher import MatcherError, TaskMatcher, request_text, text_features
from interns.miner.subclusters import decide_split, subtask_id, train_matcher

CITIES = ["Oslo", "Lima", "Paris", "Rome", "Cairo", "Tokyo", "Quito", "Accra", "Hanoi", "Bern"]


def fake_embed(texts: list[str]) -> np.ndarray:
    """Two directions: asking to search, asking to book; a little jitter per text."""
    rows = []
    for i, text in enumerate(texts):
        jitter = (i % 7) * 0.01
        rows.append([1.0, jitter] if "find" in text else [jitter, 1.0])
    return np.array(rows)


def searches_and_bookings(count: int = 30) -> tuple[list[str], list[str]]:
    texts = [f"please find me a flight to {CITIES[i % 10]} on day {i}" for i in range(count)]
    texts += [f"book the flight to {CITIES[i % 10]} for {i} people" for i in range(count)]
    return texts, ["tools:SearchFlight"] * count + ["tools:BookFlight"] * count


def test_a_signature_whose_requests_and_answers_differ_is_split():
    texts, shapes = searches_and_bookings()
    shapes[3] = "tools:BookFlight"  # one odd answer: the request still says "find"

    decision = decide_split("task-abc", texts, shapes, fake_embed(texts))

    search, book = (
        subtask_id("task-abc", "tools:SearchFlight"),
        subtask_id("task-abc", "tools:BookFlight"),
    )
    assert decision.split, decision.reason
    assert set(decision.matcher.task_ids) == {search, book}
    assert decision.consistency_before == pytest.approx(31 / 60)
    assert decision.consistency_after == pytest.approx(59 / 60)
    assert decision.agreement >= 0.95
    assert decision.matcher.match("could you find a flight to Madrid") == search
    assert decision.matcher.match("book it for 2 people") == book


def test_sub_task_ids_do_not_depend_on_the_order_of_the_traces():
    texts, shapes = searches_and_bookings()
    first = decide_split("task-abc", texts, shapes, fake_embed(texts))
    texts.reverse()
    shapes.reverse()
    again = decide_split("task-abc", texts, shapes, fake_embed(texts))
    assert set(again.matcher.task_ids) == set(first.matcher.task_ids)


def test_a_signature_whose_expert_answers_one_way_is_not_split():
    texts, _ = searches_and_bookings()
    shapes = ["tools:SearchFlight"] * 59 + ["tools:BookFlight"]  # 1 in 60: under 5%
    decision = decide_split("task-abc", texts, shapes, fake_embed(texts))
    assert not decision.split
    assert decision.reason == "the expert answers one way"


def test_answers_that_the_request_content_does_not_explain_do_not_split():
    texts, _ = searches_and_bookings()
    # Every other answer books, whatever was asked: no content cluster is purer.
    shapes = ["tools:SearchFlight", "tools:BookFlight"] * 30
    decision = decide_split("task-abc", texts, shapes, fake_embed(texts))
    assert not decision.split
    assert "content clusters" in decision.reason or "consistency gain" in decision.reason


def test_too_small_a_sample_is_not_split_and_bad_input_is_refused():
    texts, shapes = searches_and_bookings(5)
    assert decide_split("task-abc", texts, shapes, fake_embed(texts)).reason.startswith("only 10")
    with pytest.raises(ValueError, match="sample lengths differ"):
        decide_split("task-abc", texts, shapes[:-1], fake_embed(texts))


def test_the_matcher_travels_as_a_dict_and_bad_dicts_are_refused():
    texts, shapes = searches_and_bookings()
    matcher, agreement = train_matcher(texts, shapes)
    assert agreement == 1.0
    copy = TaskMatcher.from_dict(matcher.to_dict())
    assert [copy.match(t) for t in texts] == shapes
    with pytest.raises(MatcherError, match="features"):
        TaskMatcher.from_dict({**matcher.to_dict(), "features": "bert"})
    with pytest.raises(MatcherError, match=">= 2 task ids"):
        TaskMatcher.from_dict({**matcher.to_dict(), "task_ids": ["only-one"]})
    with pytest.raises(MatcherError, match="weights of"):
        TaskMatcher.from_dict({**matcher.to_dict(), "weights": {"find": [1.0]}})


def test_the_last_user_message_is_what_is_matched():
    request = {
        "messages": [
            {"role": "system", "content": "You book travel."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Find it, NOW"}]},
        ]
    }
    assert request_text(request) == "Find it, NOW"
    assert text_features("Find it, NOW") == ["find", "it", "now", "find it", "it now"]
    assert request_text({"messages": [{"role": "system", "content": "x"}]}) == ""
