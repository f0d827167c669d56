"""Training examples from stored traces: which traces count, duplicates, the session split."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from interns.common.db import Task, Trace
from interns.common.signature import request_signature
from interns.common.task_matcher import TaskMatcher
from interns.trainer.examples import (
    Example,
    UnknownTask,
    load_examples,
    related_examples,
    split_by_session,
)
from tests.conftest import WEATHER_TOOL

START = datetime(2026, 1, 1, tzinfo=UTC)


def weather_request(city: str) -> dict:
    return {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": f"Weather in {city}?"}],
        "tools": [WEATHER_TOOL],
    }


def trace(n: int, city: str, *, session: str | None = None, **columns) -> Trace:
    arguments = json.dumps({"city": city})
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c",
                "type": "function",
                "function": {"name": "GetWeather", "arguments": arguments},
            }
        ],
    }
    return Trace(
        trace_id=f"t{n}",
        tenant_id="acme",
        session_id=session or f"s{n}",
        created_at=START + timedelta(seconds=n),
        request=weather_request(city),
        response={"model": "gpt-test", "message": message},
        **columns,
    )


@pytest.fixture
def weather_task(engine):
    signature = request_signature(weather_request("Paris"))
    with Session(engine) as session:
        session.add(Task(task_id="task-weather", signature=signature, output_kind="tool_call"))
        session.add_all(
            [
                trace(1, "Paris"),
                trace(2, "Rome"),
                trace(3, "Paris", session="s1"),  # the same call again: kept once
                trace(4, "Oslo", route_target="intern"),  # an intern's answer: never a target
                trace(5, "Bern", status="error"),
                trace(6, "Lima", flagged=True),
                trace(7, "Kyiv", curation_status="near_duplicate"),
                trace(8, "Nice"),
            ]
        )
        other = trace(9, "Pisa")
        other.request = {**other.request, "tools": []}  # another signature: another task
        session.add(other)
        session.commit()
    return "task-weather"


def test_examples_are_the_expert_answered_curated_calls_of_the_task_once(engine, weather_task):
    examples = load_examples(engine, weather_task)
    assert [e.trace_id for e in examples] == ["t1", "t2", "t8"]
    assert examples[0].output_kind == "tool_call"
    assert examples[0].answer["tool_calls"][0]["function"]["name"] == "GetWeather"
    assert [e.trace_id for e in load_examples(engine, weather_task, limit=2)] == ["t2", "t8"]


def test_an_unknown_task_is_named(engine):
    with pytest.raises(UnknownTask, match="task-nope"):
        load_examples(engine, "task-nope")


def test_the_split_keeps_each_session_on_one_side_and_is_stable(engine, weather_task):
    examples = [e for e in load_examples(engine, weather_task)]
    many = [
        type(e)(f"{e.trace_id}-{i}", f"session-{i // 3}", e.request, e.answer)
        for i, e in enumerate(examples * 100)
    ]
    train, evaluation = split_by_session(many, eval_share=0.2)
    assert len(train) + len(evaluation) == len(many)
    assert {e.session_id for e in train}.isdisjoint({e.session_id for e in evaluation})
    assert 0.1 < len(evaluation) / len(many) < 0.3
    assert split_by_session(many, eval_share=0.2) == (train, evaluation)
    with pytest.raises(ValueError, match="eval_share"):
        split_by_session(many, eval_share=1.5)


def test_a_sub_task_of_a_split_signature_gets_the_calls_its_matcher_picks(engine, weather_task):
    matcher = TaskMatcher(("task-paris", "task-other"), (0.0, 0.5), {"paris": (1.0, 0.0)})
    with Session(engine) as session:
        parent = session.get(Task, weather_task)
        parent.status, parent.matcher = "split", matcher.to_dict()
        for task_id in matcher.task_ids:
            session.add(
                Task(task_id=task_id, signature=parent.signature, parent_task_id=parent.task_id)
            )
        session.add(parent)
        session.commit()
    assert [e.trace_id for e in load_examples(engine, "task-paris")] == ["t1"]
    assert [e.trace_id for e in load_examples(engine, "task-other")] == ["t2", "t8"]


TAXI_TOOL = {
    "type": "function",
    "function": {
        "name": "BookTaxi",
        "parameters": {"type": "object", "properties": {"to": {"type": "string"}}},
    },
}


def offering(row: Trace, tools: list[dict], called: str = "GetWeather") -> Trace:
    """`row` in another flow: its request offers `tools`, its answer calls `called`."""
    row.request = {**row.request, "tools": tools}
    call = row.response["message"]["tool_calls"][0]
    row.response = {
        **row.response,
        "message": {
            **row.response["message"],
            "tool_calls": [{**call, "function": {**call["function"], "name": called}}],
        },
    }
    return row


def test_related_examples_are_other_flows_calls_of_the_tasks_tools_newest_first(
    engine, weather_task
):
    changed = json.loads(json.dumps(WEATHER_TOOL))
    changed["function"]["parameters"]["properties"]["city"]["enum"] = ["Rome"]
    with Session(engine) as session:
        session.add_all(
            [
                offering(trace(20, "Oslo"), [WEATHER_TOOL, TAXI_TOOL]),
                offering(trace(21, "Graz"), [TAXI_TOOL, WEATHER_TOOL]),
                offering(trace(22, "Riga"), [WEATHER_TOOL, TAXI_TOOL], called="BookTaxi"),
                offering(trace(23, "Rome"), [changed, TAXI_TOOL]),  # defined otherwise
                # A turn of one of the task's own conversations (t2's session).
                offering(trace(24, "Bari", session="s2"), [WEATHER_TOOL, TAXI_TOOL]),
                offering(trace(25, "Gent", route_target="intern"), [WEATHER_TOOL, TAXI_TOOL]),
                offering(trace(26, "Linz", flagged=True), [WEATHER_TOOL, TAXI_TOOL]),
            ]
        )
        session.commit()
    examples = load_examples(engine, weather_task)

    related = related_examples(engine, examples, limit=10)
    assert [e.trace_id for e in related] == ["t21", "t20"]
    assert related[0].answer["tool_calls"][0]["function"]["name"] == "GetWeather"
    assert [e.trace_id for e in related_examples(engine, examples, limit=1)] == ["t21"]
    assert related_examples(engine, examples, limit=0) == []


def test_related_examples_share_the_limit_evenly_between_the_tasks_tools(engine, weather_task):
    both = [WEATHER_TOOL, TAXI_TOOL]
    with Session(engine) as session:
        session.add_all(
            [offering(trace(n, "Oslo"), both) for n in (30, 31, 32)]
            + [offering(trace(29, "Riga"), both, called="BookTaxi")]
        )
        session.commit()
    # The task's own calls offer both tools (the newest three use up the weather share).
    examples = [Example("own", "own-session", {**weather_request("Paris"), "tools": both}, {})]
    related = related_examples(engine, examples, limit=2)
    assert [e.trace_id for e in related] == ["t32", "t29"]
