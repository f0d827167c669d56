"""The collector's store: invalid records become dead letters with a reason; writes are
idempotent on trace id."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlmodel import Session, select

from interns.common.db import Trace
from interns.common.events import TraceRecorded, TraceRequest
from interns.trace_collector.store import RawRecord, parse_records, write_traces


def trace(trace_id: str, **extra) -> TraceRecorded:
    return TraceRecorded(
        trace_id=trace_id,
        tenant_id="acme",
        session_id="s1",
        request=TraceRequest(messages=[{"role": "user", "content": "hello"}]),
        **extra,
    )


def test_invalid_records_become_dead_letters_and_valid_ones_pass():
    good = trace("t1").to_bytes()
    no_messages = json.dumps({**json.loads(good), "request": {"messages": []}}).encode()
    records = [
        RawRecord("interns.traces.v1", 0, 10, good),
        RawRecord("interns.traces.v1", 0, 11, b"{not json"),
        RawRecord("interns.traces.v1", 1, 12, no_messages),
        RawRecord("interns.traces.v1", 1, 13, None),
    ]
    traces, dead = parse_records(records)
    assert [t.trace_id for t in traces] == ["t1"]
    assert [(d.source_partition, d.source_offset) for d in dead] == [(0, 11), (1, 12), (1, 13)]
    assert dead[0].payload == "{not json"
    assert "request.messages" in dead[1].reason


def test_a_redelivered_batch_is_stored_once(engine):
    assert write_traces(engine, [trace("t1"), trace("t2")]) == 2
    assert write_traces(engine, [trace("t2"), trace("t3"), trace("t3")]) == 1
    with Session(engine) as session:
        stored = session.exec(select(Trace).order_by(Trace.trace_id)).all()
    assert [t.trace_id for t in stored] == ["t1", "t2", "t3"]
    assert stored[0].request["messages"] == [{"role": "user", "content": "hello"}]
    assert stored[0].tenant_id == "acme"


def test_a_trace_without_a_time_zone_is_stored_as_utc(engine):
    # TraceRecorded accepts a naive time; the column refuses one. A refusal would fail the
    # whole batch, again at every redelivery.
    naive = trace("naive").model_dump(mode="json") | {"occurred_at": "2026-03-01T12:00:00"}
    traces, dead = parse_records([RawRecord("interns.traces.v1", 0, 1, json.dumps(naive).encode())])
    assert not dead
    assert write_traces(engine, traces) == 1
    with Session(engine) as session:
        stored = session.exec(select(Trace)).one()
    assert stored.created_at.isoformat() == "2026-03-01T12:00:00+00:00"
    with engine.connect() as connection:
        written = connection.execute(text("SELECT created_at FROM traces")).scalar_one()
    # As SQLAlchemy writes every other time in the file: the times compare as text.
    assert written == "2026-03-01 12:00:00.000000"
