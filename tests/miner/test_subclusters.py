"""Splitting one signature group by what the user asked, named by the answer's tools."""

from __future__ import annotations

import numpy as np

from interns.miner.subclusters import last_user_text, split_group, subtask_id


def fake_embed(texts: list[str]) -> np.ndarray:
    """Two directions: asking to search, asking to book; a little jitter per text."""
    rows = []
    for i, text in enumerate(texts):
        jitter = (i % 7) * 0.01
        rows.append([1.0, jitter] if "find" in text else [jitter, 1.0])
    return np.array(rows)


def test_a_group_splits_by_request_and_subtask_ids_follow_the_answer_tools():
    texts = ["find me a flight"] * 12 + ["book that flight"] * 8
    shapes = ["tools:SearchFlight"] * 11 + ["tools:BookFlight"] + ["tools:BookFlight"] * 8

    split = split_group("task-abc", texts, shapes, fake_embed)

    search, book = (
        subtask_id("task-abc", "tools:SearchFlight"),
        subtask_id("task-abc", "tools:BookFlight"),
    )
    assert split == [search] * 12 + [book] * 8, "the odd answer stays with its request's cluster"
    again = split_group("task-abc", list(reversed(texts)), list(reversed(shapes)), fake_embed)
    assert set(again) == {search, book}, "ids do not depend on the order k-means numbers them"


def test_a_group_whose_answers_agree_is_not_split():
    texts = ["find me a flight", "book that flight"] * 20
    shapes = ["tools:SearchFlight"] * 39 + ["tools:BookFlight"]
    assert split_group("task-abc", texts, shapes, fake_embed) == ["task-abc"] * 40


def test_the_last_user_message_is_embedded():
    request = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]
    }
    assert last_user_text(request) == "second"
