"""Curation for training on SQLite: duplicates and near duplicates are marked, failed and
flagged calls are not eligible, retention and deletion remove exactly what they should."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select, update
from sqlmodel import Session

from interns.common.db import Task, Trace
from interns.common.events import RouteRecord, TraceRecorded, TraceRequest, TraceResponse
from interns.trace_collector.curation import (
    DerivedTable,
    curate,
    delete_older_than,
    delete_tenant_data,
)
from interns.trace_collector.store import write_traces

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SYSTEM = (
    "You are the booking assistant of a chain of restaurants. Answer politely, ask for the "
    "missing details one at a time, never invent a restaurant, a date or a price, and call "
    "the booking tool only when the city, the restaurant, the date, the time and the number "
    "of guests are all known. Dates are written as year, month and day; times in 24 hours."
)


def booking_call(city: str, guests: int = 2) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{city}_{guests}",
                "type": "function",
                "function": {
                    "name": "ReserveRestaurant",
                    "arguments": json.dumps({"city": city, "guests": guests}),
                },
            }
        ],
    }


def call(
    trace_id: str,
    ask: str,
    answer: dict | None,
    *,
    tenant: str = "acme",
    session: str = "s1",
    minutes: int = 0,
    status: str = "ok",
    model: str = "gpt-test",
    task_id: str = "",
    history: list[dict] | None = None,
) -> TraceRecorded:
    messages = [{"role": "system", "content": SYSTEM}, *(history or [])]
    messages.append({"role": "user", "content": ask})
    return TraceRecorded(
        trace_id=trace_id,
        tenant_id=tenant,
        session_id=session,
        occurred_at=NOW - timedelta(minutes=minutes),
        request=TraceRequest(model=model, messages=messages),
        response=TraceResponse(model=model, message=answer) if answer else None,
        route=RouteRecord(task_id=task_id),
        status=status,
    )


def marks(engine) -> dict[str, tuple[str, str | None, bool]]:
    with Session(engine) as session:
        rows = session.exec(select(Trace)).scalars().all()
    return {r.trace_id: (r.curation_status, r.duplicate_of, r.training_eligible) for r in rows}


def stored_ids(engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(Trace.trace_id)).scalars())


def test_exact_duplicates_of_a_tenant_are_marked_and_the_oldest_kept(engine):
    ask = "Book a table for 2 in Paris tonight at 20:00, at Chez Lou."
    write_traces(
        engine,
        [
            call("first", ask, booking_call("Paris"), minutes=30),
            # Same call: other whitespace, another model, other tool call ids.
            call(
                "again",
                "Book a table for 2  in Paris tonight at 20:00,\nat Chez Lou. ",
                {
                    **booking_call("Paris"),
                    "tool_calls": [{**booking_call("Paris")["tool_calls"][0], "id": "call_other"}],
                },
                model="gpt-test-2",
                minutes=10,
            ),
            call("other-city", ask.replace("Paris", "Lima"), booking_call("Lima"), minutes=20),
            call("other-tenant", ask, booking_call("Paris"), tenant="globex", minutes=5),
        ],
    )
    report = curate(engine)
    assert marks(engine) == {
        "first": ("eligible", None, True),
        "again": ("duplicate", "first", False),
        "other-city": ("eligible", None, True),
        "other-tenant": ("eligible", None, True),
    }
    assert (report.counts["eligible"], report.counts["duplicate"]) == (3, 1)


def test_near_duplicates_are_marked_but_calls_with_other_answers_are_not(engine):
    ask = "I'd like to book a table for 2 people in Paris tonight at 20:00, at Chez Lou please."
    write_traces(
        engine,
        [
            call("first", ask, booking_call("Paris"), minutes=50),
            call(
                "punctuation", ask.replace(",", "").rstrip("."), booking_call("Paris"), minutes=40
            ),
            call("one-word", ask.replace("tonight", "today"), booking_call("Paris"), minutes=30),
            # Nearly the same request, another answer: a different example to learn from.
            call("other-answer", ask.rstrip("."), booking_call("Paris", guests=3), minutes=20),
            # The same conversation, one turn later: most of the text is shared.
            call(
                "next-turn",
                "Make it Lima instead, at 21:00.",
                booking_call("Lima"),
                history=[{"role": "user", "content": ask}, booking_call("Paris")],
                minutes=10,
            ),
        ],
    )
    curate(engine)
    assert marks(engine) == {
        "first": ("eligible", None, True),
        "punctuation": ("near_duplicate", "first", False),
        "one-word": ("near_duplicate", "first", False),
        "other-answer": ("eligible", None, True),
        "next-turn": ("eligible", None, True),
    }


def test_failed_and_flagged_calls_are_not_eligible(engine):
    write_traces(
        engine,
        [
            call("failed", "Book Paris for 2.", None, status="error", minutes=40),
            call("no-answer", "Book Oslo for 2.", None, minutes=30),
            call("flagged", "Book Lima for 2.", booking_call("Lima"), minutes=20),
            call("fine", "Book Kyoto for 2.", booking_call("Kyoto"), minutes=10),
        ],
    )
    with engine.begin() as connection:
        connection.execute(update(Trace).where(Trace.trace_id == "flagged").values(flagged=True))
    curate(engine)
    assert marks(engine) == {
        "failed": ("failed", None, False),
        "no-answer": ("failed", None, False),
        "flagged": ("flagged", None, False),
        "fine": ("eligible", None, True),
    }


def test_flagging_the_kept_trace_makes_its_duplicate_the_one_kept(engine):
    write_traces(
        engine,
        [
            call("first", "Book Paris for 2.", booking_call("Paris"), minutes=20),
            call("copy", "Book Paris for 2.", booking_call("Paris"), minutes=10),
        ],
    )
    curate(engine)
    with engine.begin() as connection:
        connection.execute(update(Trace).where(Trace.trace_id == "first").values(flagged=True))
    report = curate(engine)
    assert marks(engine) == {
        "first": ("flagged", None, False),
        "copy": ("eligible", None, True),
    }
    assert report.changed == 2


def test_a_second_run_changes_nothing_and_a_new_trace_waits_for_the_next(engine):
    write_traces(engine, [call("a", "Book Paris for 2.", booking_call("Paris"))])
    assert curate(engine).changed == 1
    assert curate(engine).changed == 0
    write_traces(engine, [call("b", "Book Paris for 2.", booking_call("Paris"), minutes=-1)])
    assert marks(engine)["b"] == ("pending", None, False)
    assert curate(engine).changed == 1
    assert marks(engine)["b"] == ("duplicate", "a", False)


def test_retention_deletes_only_the_calls_older_than_the_limit(engine):
    day = 24 * 60
    write_traces(
        engine,
        [
            call("old", "Book Paris for 2.", booking_call("Paris"), minutes=40 * day),
            call("copy-of-old", "Book Paris for 2.", booking_call("Paris"), minutes=10 * day),
            call("recent", "Book Lima for 2.", booking_call("Lima"), minutes=day),
            call("now", "Book Oslo for 2.", booking_call("Oslo")),
        ],
    )
    curate(engine)
    report = delete_older_than(engine, days=30, now=NOW)
    assert (report.traces, report.duplicates_reset) == (1, 1)
    assert stored_ids(engine) == {"copy-of-old", "recent", "now"}
    # The copy lost its original: the next run keeps it instead.
    curate(engine)
    assert marks(engine)["copy-of-old"] == ("eligible", None, True)


def examples_table() -> Table:
    """A table derived from traces, as a future one must be (see DerivedTable)."""
    return Table(
        "test_examples",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("tenant_id", String),
        Column("session_id", String),
        Column("made_at", DateTime(timezone=True)),
    )


def test_deleting_a_session_removes_exactly_its_rows_and_what_derives_from_them(engine):
    examples = examples_table()
    examples.metadata.create_all(engine)
    write_traces(
        engine,
        [
            call("acme-s1-a", "Book Paris for 2.", booking_call("Paris"), task_id="t-1", minutes=9),
            call("acme-s1-b", "Book Lima for 2.", booking_call("Lima"), task_id="t-1", minutes=8),
            call("acme-s2", "Book Paris for 2.", booking_call("Paris"), session="s2", minutes=7),
            call("globex-s1", "Book Paris for 2.", booking_call("Paris"), tenant="globex"),
        ],
    )
    with Session(engine) as session:
        session.add(Task(task_id="t-1", size=5))
        session.commit()
    with engine.begin() as connection:
        connection.execute(
            insert(examples),
            [
                {"tenant_id": "acme", "session_id": "s1", "made_at": NOW},
                {"tenant_id": "acme", "session_id": "s2", "made_at": NOW},
                {"tenant_id": "globex", "session_id": "s1", "made_at": NOW},
            ],
        )
    curate(engine)
    assert marks(engine)["acme-s2"] == ("duplicate", "acme-s1-a", False)

    derived = [DerivedTable(examples, "tenant_id", "session_id", "made_at")]
    report = delete_tenant_data(engine, "acme", "s1", derived=derived)

    assert stored_ids(engine) == {"acme-s2", "globex-s1"}
    assert (report.traces, report.duplicates_reset, report.derived) == (2, 1, {"test_examples": 1})
    with engine.connect() as connection:
        left = connection.execute(select(examples.c.tenant_id, examples.c.session_id)).all()
        size = connection.execute(select(Task.size).where(Task.task_id == "t-1")).scalar_one()
    assert sorted(left) == [("acme", "s2"), ("globex", "s1")]
    assert size == 3
    assert marks(engine)["acme-s2"] == ("pending", None, False)


def test_deleting_a_tenant_removes_all_its_rows_and_no_other_tenants(engine):
    examples = examples_table()
    examples.metadata.create_all(engine)
    write_traces(
        engine,
        [
            call("acme-1", "Book Paris for 2.", booking_call("Paris")),
            call("acme-2", "Book Lima for 2.", booking_call("Lima"), session="s2"),
            call("acme-corp-1", "Book Paris for 2.", booking_call("Paris"), tenant="acme-corp"),
        ],
    )
    with engine.begin() as connection:
        connection.execute(
            insert(examples),
            [
                {"tenant_id": "acme", "session_id": "s1"},
                {"tenant_id": "acme-corp", "session_id": "s1"},
            ],
        )
    derived = [DerivedTable(examples, "tenant_id", "session_id")]
    report = delete_tenant_data(engine, "acme", derived=derived)
    assert stored_ids(engine) == {"acme-corp-1"}
    assert (report.traces, report.derived) == (2, {"test_examples": 1})
