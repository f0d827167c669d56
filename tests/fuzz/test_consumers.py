"""Every Kafka consumer's real handlers, on FastStream's in-memory broker, fed malformed
records by hypothesis: each one lands in `interns.deadletter.v1` with a reason, naming the
consumer and the record's place, and the valid event sent after them is still processed.

The consumers: the trace-collector (`interns.traces.v1`, in batches), the router
(`interns.rollouts.v1`, `interns.tasks.v1`), the trainer (`interns.tasks.v1`) and the
deploy controller (`interns.models.v1`, `interns.shadow.v1`, `interns.rollouts.v1`). The
miner consumes no topic (it reads the database).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker, TestKafkaBroker
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session, select

from interns.common.db import Task, Trace
from interns.common.events import (
    DeadLetter,
    Event,
    ModelRegistered,
    RolloutChanged,
    ShadowCompared,
    TaskChanged,
    TraceRecorded,
)
from interns.common.task_matcher import TaskMatcher
from interns.deployer.transport import subscribe as subscribe_deployer
from interns.router.consumers import subscribe as subscribe_router
from interns.router.routing import RoutingTable
from interns.trace_collector.handlers import register as register_collector
from interns.trace_collector.settings import CollectorSettings
from interns.trainer.catalog import DEFAULT_CATALOG
from interns.trainer.consumers import subscribe as subscribe_trainer
from interns.trainer.controller import TrainingController
from interns.trainer.settings import TrainerSettings
from tests.fuzz.payloads import malformed_records

NUMBERS = itertools.count()
MATCHER = TaskMatcher(("t-a", "t-b"), (0.0, 0.0), {"find": (2.0, -2.0)}).to_dict()


def valid_event(event: type[Event], number: int) -> Event:
    """A valid event of each topic, told apart by `number`."""
    task_id = f"task-{number}"
    if event is TaskChanged:
        return TaskChanged(
            task_id=task_id,
            change="split",
            signature=f"sig-{number}",
            matcher=MATCHER,
            size=500,
            traffic_share=0.2,
            output_kind="tool_call",
            consistency=0.9,
        )
    if event is RolloutChanged:
        return RolloutChanged(
            task_id=task_id, target="intern-x", mode="full", changed_by="operator:ann"
        )
    if event is ModelRegistered:
        return ModelRegistered(
            task_id=task_id, model="intern-x", version=1, base_model="tiny", passed=True
        )
    if event is ShadowCompared:
        return ShadowCompared(
            trace_id=f"trace-{number}",
            task_id=task_id,
            model="intern-x",
            model_version=1,
            agree=True,
            score=1.0,
            expert_answer="{}",
            intern_answer="{}",
        )
    return TraceRecorded(
        trace_id=f"trace-{number}",
        tenant_id="acme",
        request={"messages": [{"role": "user", "content": f"question {number}"}]},
    )


def bad_records(event: type[Event], count: int = 3):
    """A few malformed records of `event`'s topic."""
    example = valid_event(event, 0).model_dump(mode="json")
    return st.lists(malformed_records(event, example), min_size=1, max_size=count)


async def deliver(broker: KafkaBroker, topic: str, records: list[bytes], batch: bool = False):
    """Publishes `records` in order on the in-memory broker; returns the dead letters."""
    letters: list[DeadLetter] = []

    @broker.subscriber(DeadLetter.topic)
    async def keep(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as test_broker:
        if batch:
            await test_broker.publish_batch(*records, topic=topic)
        else:
            for record in records:
                await test_broker.publish(record, topic)
    return letters


def assert_dead_lettered(
    letters: list[DeadLetter], bad: list[bytes], consumer: str, topic: str, payload: bool = True
):
    assert len(letters) == len(bad), [letter.reason for letter in letters]
    for letter, raw in zip(letters, bad, strict=True):
        assert (letter.consumer, letter.source_topic) == (consumer, topic)
        assert letter.reason.strip()
        assert letter.source_offset >= 0
        if payload:
            assert letter.payload == raw.decode("utf-8", errors="replace")


@given(event=st.sampled_from([RolloutChanged, TaskChanged]), data=st.data())
def test_the_router_dead_letters_malformed_route_and_task_events_and_applies_the_next(event, data):
    bad = data.draw(bad_records(event))
    good = valid_event(event, next(NUMBERS))
    table, broker = RoutingTable(), KafkaBroker("127.0.0.1:9")
    subscribe_router(broker, table)

    letters = asyncio.run(deliver(broker, event.topic, [*bad, good.to_bytes()]))

    assert_dead_lettered(letters, bad, "router", event.topic)
    assert table.revision == 1
    if event is RolloutChanged:
        assert table.routes[good.task_id].target == "intern-x"
    else:
        assert table.matchers[good.signature].task_id == good.task_id


@given(data=st.data())
def test_the_trainer_dead_letters_malformed_task_events_and_queues_the_next_job(engine, data):
    bad = data.draw(bad_records(TaskChanged))
    good = valid_event(TaskChanged, next(NUMBERS))
    with Session(engine) as session:
        session.add(Task(task_id=good.task_id, size=500, output_kind="tool_call"))
        session.commit()
    submitted: list[tuple] = []

    async def publish_progress(_event) -> None:
        return None

    jobs = TrainingController(
        engine,
        TrainerSettings(database_url="", gpu_workers=False),
        DEFAULT_CATALOG,
        lambda job, queue: submitted.append((job, queue)),
        publish_progress,
    )
    broker = KafkaBroker("127.0.0.1:9")
    subscribe_trainer(broker, jobs)

    letters = asyncio.run(deliver(broker, TaskChanged.topic, [*bad, good.to_bytes()]))

    assert_dead_lettered(letters, bad, "trainer", TaskChanged.topic)
    assert len(submitted) == 1


@dataclass
class RecordingDeployer:
    """Stands in for the deploy controller's logic: what reached each handler."""

    seen: list[Event] = field(default_factory=list)

    async def on_registered(self, event: ModelRegistered) -> None:
        self.seen.append(event)

    def on_comparison(self, event: ShadowCompared) -> None:
        self.seen.append(event)

    def on_route(self, event: RolloutChanged) -> None:
        self.seen.append(event)


@dataclass
class HeldLease:
    held: bool = True


@given(event=st.sampled_from([ModelRegistered, ShadowCompared, RolloutChanged]), data=st.data())
def test_the_deployer_dead_letters_malformed_events_and_handles_the_next(event, data):
    bad = data.draw(bad_records(event))
    good = valid_event(event, next(NUMBERS))
    deployer, broker = RecordingDeployer(), KafkaBroker("127.0.0.1:9")
    subscribe_deployer(broker, deployer, HeldLease())

    letters = asyncio.run(deliver(broker, event.topic, [*bad, good.to_bytes()]))

    assert_dead_lettered(letters, bad, "deployer", event.topic)
    assert deployer.seen == [good]


@given(data=st.data())
def test_the_collector_dead_letters_malformed_traces_and_stores_the_rest_of_the_batch(engine, data):
    bad = data.draw(bad_records(TraceRecorded, count=4))
    good = valid_event(TraceRecorded, next(NUMBERS))
    records = data.draw(st.permutations([*bad, good.to_bytes()]))
    broker = KafkaBroker("127.0.0.1:9")
    settings = CollectorSettings(
        database_url=str(engine.url), redaction_key="a-test-key-of-some-length"
    )
    register_collector(broker, engine, settings)

    letters = asyncio.run(deliver(broker, TraceRecorded.topic, records, batch=True))

    # Payloads are redacted (PII placeholders): compared by count and place, not text.
    order = [raw for raw in records if raw != good.to_bytes()]
    assert_dead_lettered(letters, order, "trace-collector", TraceRecorded.topic, payload=False)
    with Session(engine) as session:
        stored = session.exec(select(Trace.trace_id).where(Trace.trace_id == good.trace_id))
        assert stored.all() == [good.trace_id]
