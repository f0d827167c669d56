"""Every consumer on a real Tansu broker: a burst of malformed records on each topic, among
valid events. Every valid event is processed, every malformed record is in the
dead-letter topic once per consumer that read it, with a reason.

The consumers run in this process with their real handlers (`subscribe`/`register`) and
FastStream's Kafka client, one client per service as in their processes. The malformed
records include what the in-memory broker cannot carry: a JSON content type over bytes
that are not JSON, and a header value that is not UTF-8.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from sqlmodel import Session, select

from interns.bench.collector import start_broker
from interns.common.db import Task, Trace, TrainingJob
from interns.common.events import (
    DeadLetter,
    ModelRegistered,
    RolloutChanged,
    ShadowCompared,
    TaskChanged,
    TraceRecorded,
)
from interns.deployer.transport import subscribe as subscribe_deployer
from interns.router.consumers import subscribe as subscribe_router
from interns.router.routing import RoutingTable
from interns.stack.supervisor import create_topics
from interns.trace_collector.handlers import register as register_collector
from interns.trace_collector.settings import CollectorSettings
from interns.trainer.catalog import DEFAULT_CATALOG
from interns.trainer.consumers import subscribe as subscribe_trainer
from interns.trainer.controller import TrainingController
from interns.trainer.settings import TrainerSettings
from tests.fuzz.test_consumers import HeldLease, RecordingDeployer, valid_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

JSON_TYPE = [("content-type", b"application/json")]
BAD_HEADER = [("x-origin", b"\xff\xfe\xfa")]


def malformed(event: type) -> list[tuple[bytes, list]]:
    """The burst of malformed records of a topic, with the headers each is sent with."""
    valid = valid_event(event, 0).model_dump(mode="json")
    first_field = next(name for name, field in event.model_fields.items() if field.is_required())
    return [
        (b"\x00\xff garbage \x80", []),
        (b"{not json", []),
        (b"{not json either", JSON_TYPE),
        (json.dumps(valid)[:-7].encode(), []),
        (b"[1, 2, 3]", []),
        (json.dumps({**valid, first_field: {"nested": ["x" * 300_000]}}).encode(), []),
        (json.dumps({k: v for k, v in valid.items() if k != first_field}).encode(), []),
        (json.dumps({**valid, "schema_version": 2}).encode(), []),
        (json.dumps({**valid, "added_in_v2": True}).encode(), []),
        (b"", []),
        (valid_event(event, 0).to_bytes().replace(b'"', b"'"), BAD_HEADER),
    ]


READERS = {
    TraceRecorded: ["trace-collector"],
    TaskChanged: ["router", "trainer"],
    RolloutChanged: ["router", "deployer"],
    ModelRegistered: ["deployer"],
    ShadowCompared: ["deployer"],
}


async def read_dead_letters(address: str, expected: int, timeout_s: float) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        DeadLetter.topic, bootstrap_servers=address, auto_offset_reset="earliest"
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(letters) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                letters += [DeadLetter.model_validate_json(r.value) for r in records]
        await asyncio.sleep(1.0)  # one more letter than expected would land now
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            letters += [DeadLetter.model_validate_json(r.value) for r in records]
    finally:
        await consumer.stop()
    return letters


async def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not processed in {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
def broker_address(tmp_path):
    broker, address = start_broker(tmp_path)
    create_topics(address)
    yield address
    broker.stop()


async def test_malformed_bursts_on_every_topic_are_dead_lettered_and_valid_events_processed(
    broker_address, engine
):
    table, deployer, submitted = RoutingTable(), RecordingDeployer(), []
    with Session(engine) as session:
        for number in range(1, 4):
            session.add(Task(task_id=f"task-{number}", size=500, output_kind="tool_call"))
        session.commit()

    async def no_progress(_event) -> None:
        return None

    jobs = TrainingController(
        engine,
        TrainerSettings(database_url="", gpu_workers=False),
        DEFAULT_CATALOG,
        lambda job_id, queue: submitted.append(job_id),
        no_progress,
    )
    services = {name: KafkaBroker(broker_address) for name in ("router", "trainer", "deployer")}
    services["collector"] = KafkaBroker(broker_address)
    subscribe_router(services["router"], table)
    subscribe_trainer(services["trainer"], jobs)
    subscribe_deployer(services["deployer"], deployer, HeldLease())
    collector_settings = CollectorSettings(
        database_url=str(engine.url), redaction_key="a-test-key-of-some-length"
    )
    register_collector(services["collector"], engine, collector_settings)
    producer = AIOKafkaProducer(bootstrap_servers=broker_address, max_request_size=4 * 2**20)
    await producer.start()
    for service in services.values():
        await service.start()
    try:
        # The deployer reads comparisons and routes from the latest offset: a warm-up
        # event of each that it sees means it is positioned before the burst.
        for event in (ShadowCompared, RolloutChanged):
            warm_up = valid_event(event, 100)
            await producer.send_and_wait(event.topic, warm_up.to_bytes())
            await wait_for(lambda w=warm_up: w in deployer.seen, 30, f"{event.__name__} warm-up")

        expected_letters: Counter = Counter()
        valid_sent: dict[type, list] = {}
        for event, readers in READERS.items():
            records = malformed(event)
            goods = [valid_event(event, number) for number in range(1, 4)]
            valid_sent[event] = goods
            # Valid events first, between and last among the malformed ones.
            burst = [(goods[0].to_bytes(), []), *records[:5], (goods[1].to_bytes(), [])]
            burst += [*records[5:], (goods[2].to_bytes(), [])]
            for value, headers in burst:
                await producer.send_and_wait(event.topic, value, headers=headers)
            for reader in readers:
                expected_letters[(reader, event.topic)] += len(records)

        traces = [t.trace_id for t in valid_sent[TraceRecorded]]
        await wait_for(lambda: len(stored(engine, traces)) == 3, 60, "the valid traces")
        await wait_for(lambda: len(submitted) == 3, 60, "the training jobs")
        tasks = {f"task-{number}" for number in range(1, 4)}
        await wait_for(lambda: tasks <= set(table.routes), 60, "the routes")
        await wait_for(lambda: len(table.matchers) == 3, 60, "the matchers")
        for event in (ModelRegistered, ShadowCompared, RolloutChanged):
            for good in valid_sent[event]:
                await wait_for(lambda g=good: g in deployer.seen, 60, f"deployer {good}")

        letters = await read_dead_letters(broker_address, sum(expected_letters.values()), 60)
    finally:
        for service in services.values():
            await service.stop()
        await producer.stop()

    assert Counter((letter.consumer, letter.source_topic) for letter in letters) == (
        expected_letters
    )
    assert all(letter.reason.strip() and letter.source_offset >= 0 for letter in letters)
    with Session(engine) as session:
        jobs_of = set(session.exec(select(TrainingJob.task_id)))
    assert jobs_of == {"task-1", "task-2", "task-3"}
    undecodable = [letter for letter in letters if letter.reason.startswith("undecodable")]
    # The JSON content type over bad bytes, and the header that is not UTF-8: the typed
    # consumers could not even decode them (once per reader of each topic).
    assert len(undecodable) == 2 * sum(
        len(readers) for event, readers in READERS.items() if event is not TraceRecorded
    )


def stored(engine, trace_ids: list[str]) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Trace.trace_id).where(Trace.trace_id.in_(trace_ids))))
