"""The Triton adapter's batching logic, without Triton."""

from __future__ import annotations

import json

from interns.trainer.triton_model import answer_batch


def echo(bodies):
    return [{"content": body["messages"][-1]["content"], "tool_calls": None} for body in bodies]


def request(text: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}]}).encode()


def test_a_batch_is_answered_in_one_call_in_order():
    calls = []

    def answer(bodies):
        calls.append(len(bodies))
        return echo(bodies)

    results = answer_batch(answer, [[request("a"), request("b")], [request("c")]])
    assert calls == [3]
    assert [[json.loads(row)["content"] for row in rows] for rows in results] == [["a", "b"], ["c"]]


def test_a_bad_request_fails_alone():
    results = answer_batch(echo, [[b"not json"], [request("ok")], [b"[1]"]])
    assert isinstance(results[0], ValueError) and "bad REQUEST" in str(results[0])
    assert json.loads(results[1][0])["content"] == "ok"
    assert isinstance(results[2], ValueError)


def test_when_the_intern_fails_on_one_request_the_others_are_still_answered():
    def picky(bodies):
        if any(body["messages"][-1]["content"] == "boom" for body in bodies):
            raise RuntimeError("cannot")
        return echo(bodies)

    results = answer_batch(picky, [[request("boom")], [request("fine")]])
    assert isinstance(results[0], RuntimeError) and "cannot" in str(results[0])
    assert json.loads(results[1][0])["content"] == "fine"
