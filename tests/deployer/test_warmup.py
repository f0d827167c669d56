"""A new version is warmed with the task's latest stored calls: those routed as the task,
else the latest calls that carry its signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from interns.common.db import Task, Trace
from interns.common.signature import request_signature
from interns.deployer.warmup import warmup_bodies
from tests.conftest import openai_log_line


def store(engine, rows) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session:
        for n, (city, task_id, status) in enumerate(rows):
            session.add(
                Trace(
                    trace_id=f"t{n}",
                    tenant_id="acme",
                    request={**openai_log_line(city, "s")["request"], "temperature": None},
                    task_id=task_id,
                    status=status,
                    created_at=now - timedelta(minutes=len(rows) - n),
                )
            )
        session.commit()


def test_the_newest_calls_of_the_task_warm_it(engine):
    store(
        engine, [("Lima", "weather", "ok"), ("Oslo", "weather", "ok"), ("Rome", "weather", "error")]
    )
    bodies = warmup_bodies(engine, "weather", 5)
    cities = [b["messages"][-1]["content"] for b in bodies]
    assert cities == [
        "What's the weather in Oslo tomorrow?",
        "What's the weather in Lima tomorrow?",
    ]
    assert "temperature" not in bodies[0]  # unset fields are not sent


def test_a_task_never_routed_is_warmed_with_calls_of_its_signature(engine):
    store(engine, [("Lima", None, "ok"), ("Oslo", None, "ok")])
    signature = request_signature(openai_log_line("Lima", "s")["request"])
    with Session(engine) as session:
        session.add(Task(task_id="weather", signature=signature))
        session.add(Task(task_id="other", signature="nothing-matches"))
        session.commit()
    assert len(warmup_bodies(engine, "weather", 1)) == 1
    assert warmup_bodies(engine, "other", 3) == []
    assert warmup_bodies(engine, "weather", 0) == []
