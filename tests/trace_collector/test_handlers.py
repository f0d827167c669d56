"""The collector's handler, on FastStream's in-memory broker: what reaches the database and
the dead-letter topic is redacted."""

from __future__ import annotations

import json

from faststream.kafka import KafkaBroker, TestKafkaBroker
from sqlmodel import Session, select

from interns.common.db import Trace, make_engine, upgrade_database
from interns.common.events import DeadLetter, TraceRecorded
from interns.trace_collector.handlers import register
from interns.trace_collector.settings import CollectorSettings


async def test_the_handler_stores_and_dead_letters_redacted_text(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    broker = KafkaBroker("127.0.0.1:9")
    settings = CollectorSettings(database_url=url, redaction_key="a-test-key-of-some-length")
    register(broker, engine, settings)
    letters: list[dict] = []

    @broker.subscriber(DeadLetter.topic)
    async def keep(letter: dict) -> None:
        letters.append(letter)

    trace = TraceRecorded(
        trace_id="t1",
        tenant_id="acme",
        request={"messages": [{"role": "user", "content": "I'm bob@example.com, 408-247-8880"}]},
    )
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(trace.model_dump(mode="json"), TraceRecorded.topic)
        await test_broker.publish(
            {"tenant_id": "acme", "note": "bob@example.com"}, TraceRecorded.topic
        )

    with Session(engine) as session:
        row = session.exec(select(Trace)).one()
    content = row.request["messages"][0]["content"]
    assert "bob@example.com" not in content and "408-247-8880" not in content
    assert content.startswith("I'm <EMAIL_") and "<PHONE_" in content
    assert len(letters) == 1
    assert "bob@example.com" not in letters[0]["payload"]
    assert json.loads(letters[0]["payload"])["note"] == content.split(",")[0][4:]


async def test_a_trace_the_database_cannot_hold_is_dead_lettered_and_the_rest_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    broker = KafkaBroker("127.0.0.1:9")
    settings = CollectorSettings(database_url=url, redaction_key="a-test-key-of-some-length")
    register(broker, engine, settings)
    letters: list[dict] = []

    @broker.subscriber(DeadLetter.topic)
    async def keep(letter: dict) -> None:
        letters.append(letter)

    def trace(trace_id: str, model_version: int) -> dict:
        return TraceRecorded(
            trace_id=trace_id,
            tenant_id="acme",
            request={"messages": [{"role": "user", "content": "hi"}]},
            route={"model_version": model_version},
        ).model_dump(mode="json")

    # A valid event (pydantic takes any integer) that SQLite's integers cannot hold: it
    # failed the whole batch, again at every redelivery.
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            trace("fine", 3),
            trace("too-big", 2**70),
            trace("fine-too", 4),
            topic=TraceRecorded.topic,
        )

    with Session(engine) as session:
        stored = sorted(row.trace_id for row in session.exec(select(Trace)))
    assert stored == ["fine", "fine-too"]
    assert len(letters) == 1
    assert "too-big" in letters[0]["reason"] and "refused" in letters[0]["reason"]
    assert json.loads(letters[0]["payload"])["trace_id"] == "too-big"
