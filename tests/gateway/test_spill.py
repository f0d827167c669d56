"""The trace spill: traces Kafka could not take wait on local disk, survive restarts and
crashes, leave only once Kafka has them, and never grow past their bound. Kafka here is
an address nobody listens on, so every trace goes to the spill."""

from __future__ import annotations

import asyncio
import gc
import shutil
import sqlite3
import time
import uuid
import weakref
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from interns.common.events import MessageRecord, TraceRecorded, TraceRequest
from interns.gateway.spill import FILE_NAME, SpillQueue
from interns.gateway.traces import TracePublisher
from tests.conftest import assert_never_waited, eventually, free_port
from tests.gateway.kafka_fakes import NO_ANSWER, FakeProducer, Message, use_producer


def record(number: int, size: int = 0) -> tuple[bytes, bytes]:
    return f"s-{number % 3}".encode(), f'{{"n": "{number:04d}", "pad": "{"x" * size}"}}'.encode()


def trace(number: int) -> TraceRecorded:
    return TraceRecorded(
        trace_id=f"t-{number}",
        tenant_id="acme",
        session_id=f"s-{number % 7}",
        request=TraceRequest(messages=[MessageRecord(role="user", content=f"call {number}")]),
    )


def values(spill: SpillQueue) -> list[bytes]:
    return [item.value for item in spill.peek(10_000).records]


def metric(name: str, service: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


# --- the queue on disk ------------------------------------------------------------------


def test_records_survive_a_restart_in_order(tmp_path):
    spill = SpillQueue(tmp_path, max_bytes=1 << 20)
    assert spill.put([record(n) for n in range(3)]) == 3
    assert spill.put([record(n) for n in range(3, 5)]) == 2
    spill.close()

    reopened = SpillQueue(tmp_path, max_bytes=1 << 20)
    assert reopened.pending == 5
    assert [(item.key, item.value) for item in reopened.peek(10).records] == [
        record(n) for n in range(5)
    ]


def test_only_acknowledged_records_leave(tmp_path):
    spill = SpillQueue(tmp_path, max_bytes=1 << 20)
    spill.put([record(n) for n in range(5)])
    first, second, third, _, _ = spill.peek(10).records
    spill.ack([first.id, third.id])
    spill.close()

    reopened = SpillQueue(tmp_path, max_bytes=1 << 20)
    assert values(reopened) == [record(n)[1] for n in (1, 3, 4)]
    assert reopened.pending == 3
    assert reopened.pending_bytes == sum(len(k) + len(v) for k, v in map(record, (1, 3, 4)))


def test_the_bound_keeps_the_oldest_and_refuses_the_rest(tmp_path):
    size = sum(map(len, record(0, size=1000)))
    spill = SpillQueue(tmp_path, max_bytes=size * 10)

    assert spill.put([record(n, size=1000) for n in range(15)]) == 10
    assert spill.put([record(99, size=1000)]) == 0
    assert spill.pending_bytes <= size * 10

    spill.close()
    reopened = SpillQueue(tmp_path, max_bytes=size * 10)
    assert reopened.pending == 10
    oldest = reopened.peek(4).records
    reopened.ack([item.id for item in oldest])
    assert reopened.put([record(n, size=1000) for n in range(20, 30)]) == 4


def test_a_write_torn_by_a_crash_loses_nothing_written_before_it(tmp_path):
    spill = SpillQueue(tmp_path / "live", max_bytes=1 << 20)
    spill.put([record(n) for n in range(3)])
    spill.put([record(n) for n in range(3, 6)])
    # The files as a crash would leave them (the connection is still open), with the
    # last write cut short: its end never reached the disk.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(spill.path, crashed / FILE_NAME)
    wal = Path(f"{spill.path}-wal").read_bytes()
    (crashed / f"{FILE_NAME}-wal").write_bytes(wal[:-100])

    recovered = SpillQueue(crashed, max_bytes=1 << 20)
    assert values(recovered) == [record(n)[1] for n in range(3)]
    assert recovered.put([record(9)]) == 1
    assert recovered.pending == 4


def test_a_corrupt_record_is_removed_and_the_others_are_kept(tmp_path):
    spill = SpillQueue(tmp_path, max_bytes=1 << 20)
    spill.put([record(n) for n in range(4)])
    spill.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("UPDATE records SET value = ? WHERE id = 2", (b'{"n": 1, "pad\x00\xff',))

    reopened = SpillQueue(tmp_path, max_bytes=1 << 20)
    batch = reopened.peek(10)
    assert batch.corrupt == 1
    assert [item.value for item in batch.records] == [record(n)[1] for n in (0, 2, 3)]
    assert reopened.pending == 3


def test_an_unreadable_spill_file_is_set_aside_and_a_new_one_used(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b"not a database at all" * 100)

    spill = SpillQueue(tmp_path, max_bytes=1 << 20)

    assert spill.pending == 0
    assert spill.put([record(1)]) == 1
    assert [path.name for path in tmp_path.glob(f"{FILE_NAME}.corrupt-*")]


# --- the publisher while Kafka is away --------------------------------------------------


@pytest.fixture
def service() -> str:
    """A metrics label of this test's own."""
    return f"test-{uuid.uuid4().hex[:8]}"


def unreachable_kafka() -> str:
    return f"127.0.0.1:{free_port()}"


async def test_traces_go_to_disk_without_waiting_and_stay_there_after_stop(tmp_path, service):
    publisher = TracePublisher(unreachable_kafka(), service=service, spill_dir=tmp_path)
    await publisher.start()
    durations = []
    for number in range(1000):
        call = trace(number)
        started = time.perf_counter()
        assert publisher.publish(call)
        durations.append(time.perf_counter() - started)
        if number % 50 == 0:
            await asyncio.sleep(0.01)
    await eventually(lambda: metric("interns_traces_spilled_total", service) == 1000)
    assert not publisher.connected
    assert metric("interns_trace_spill_depth", service) == 1000
    await publisher.stop(drain_s=1.0)

    assert_never_waited(durations)
    assert metric("interns_traces_dropped_total", service) == 0
    spill = SpillQueue(tmp_path, max_bytes=1 << 30)
    stored = [TraceRecorded.model_validate_json(item.value) for item in spill.peek(1000).records]
    assert [item.trace_id for item in stored] == [f"t-{n}" for n in range(1000)]


async def test_stop_writes_memory_to_disk(tmp_path, service):
    publisher = TracePublisher(unreachable_kafka(), service=service, spill_dir=tmp_path)
    await publisher.start()
    for number in range(50):
        publisher.publish(trace(number))
    await publisher.stop(drain_s=0.1)

    assert SpillQueue(tmp_path, max_bytes=1 << 30).pending == 50
    assert not publisher.publish(trace(51))


async def test_the_depth_gauge_does_not_keep_a_stopped_publisher_alive(tmp_path, service):
    publisher = TracePublisher(unreachable_kafka(), service=service, spill_dir=tmp_path)
    await publisher.start()
    for number in range(5):
        publisher.publish(trace(number))
    await publisher.stop(drain_s=0.1)
    assert metric("interns_trace_spill_depth", service) == 5  # kept in the spill
    gone = weakref.ref(publisher)
    del publisher
    gc.collect()

    assert gone() is None
    assert metric("interns_trace_spill_depth", service) == 0


async def test_beyond_the_spill_bound_traces_are_dropped_and_counted(tmp_path, service):
    one_trace = len(trace(0).key()) + len(trace(0).to_bytes())
    publisher = TracePublisher(
        unreachable_kafka(), service=service, spill_dir=tmp_path, spill_max_bytes=one_trace * 20
    )
    await publisher.start()
    for number in range(50):
        assert publisher.publish(trace(number))
    await publisher.stop(drain_s=1.0)

    kept = SpillQueue(tmp_path, max_bytes=1 << 30).pending
    assert 18 <= kept <= 20
    assert metric("interns_traces_spilled_total", service) == kept
    assert metric("interns_traces_dropped_total", service) == 50 - kept


async def test_a_full_memory_queue_refuses_at_once(tmp_path, service):
    publisher = TracePublisher(unreachable_kafka(), 10, service, spill_dir=tmp_path)
    await publisher.start()
    accepted = [publisher.publish(trace(number)) for number in range(30)]
    await publisher.stop(drain_s=1.0)

    assert accepted == [True] * 10 + [False] * 20
    assert metric("interns_traces_dropped_total", service) == 20
    assert SpillQueue(tmp_path, max_bytes=1 << 30).pending == 10


# --- the publisher when Kafka fails part of a batch -------------------------------------


class BrokerThatDies(FakeProducer):
    """One partition: acknowledges the first `takes` records, then fails every record as a
    broker that has just died would, or never answers (`hangs`)."""

    takes = 0
    hangs = False
    acknowledged: list[bytes] = []

    def deliver(self, message: Message) -> int | KafkaError | object:
        if len(self.acknowledged) < self.takes:
            self.acknowledged.append(message.value())
            return len(self.acknowledged) - 1
        if self.hangs:
            return NO_ANSWER
        return KafkaError(KafkaError._TRANSPORT, "connection reset")


@pytest.fixture
def dying_broker(monkeypatch):
    monkeypatch.setattr(BrokerThatDies, "acknowledged", [])
    return use_producer(monkeypatch, BrokerThatDies)


def trace_ids(values: list[bytes]) -> list[str]:
    return [TraceRecorded.model_validate_json(value).trace_id for value in values]


async def test_only_what_kafka_acknowledged_leaves_the_spill(tmp_path, service, dying_broker):
    spill = SpillQueue(tmp_path, max_bytes=1 << 30)
    spill.put([(trace(n).key(), trace(n).to_bytes()) for n in range(100)])
    spill.close()
    dying_broker.takes = 30

    publisher = TracePublisher("kafka:9092", service=service, spill_dir=tmp_path)
    await publisher.start()
    await eventually(lambda: metric("interns_traces_replayed_total", service) == 30)
    await publisher.stop(drain_s=0.1)

    assert trace_ids(dying_broker.acknowledged) == [f"t-{n}" for n in range(30)]
    assert trace_ids(values(SpillQueue(tmp_path, max_bytes=1 << 30))) == [
        f"t-{n}" for n in range(30, 100)
    ]


async def test_what_kafka_failed_to_take_from_memory_goes_to_the_spill(
    tmp_path, service, dying_broker
):
    dying_broker.takes = 10
    publisher = TracePublisher("kafka:9092", service=service, spill_dir=tmp_path)
    await publisher.start()
    await eventually(lambda: publisher.connected)
    for number in range(50):
        publisher.publish(trace(number))
    await eventually(lambda: metric("interns_traces_spilled_total", service) == 40)
    await publisher.stop(drain_s=0.1)

    assert trace_ids(dying_broker.acknowledged) == [f"t-{n}" for n in range(10)]
    assert trace_ids(values(SpillQueue(tmp_path, max_bytes=1 << 30))) == [
        f"t-{n}" for n in range(10, 50)
    ]
    assert metric("interns_traces_dropped_total", service) == 0


async def test_stop_keeps_the_batch_kafka_has_not_answered(tmp_path, service, dying_broker):
    dying_broker.hangs = True
    publisher = TracePublisher("kafka:9092", service=service, spill_dir=tmp_path)
    await publisher.start()
    await eventually(lambda: publisher.connected)
    for number in range(20):
        publisher.publish(trace(number))
    await asyncio.sleep(0.1)
    await publisher.stop(drain_s=0.1)

    assert trace_ids(values(SpillQueue(tmp_path, max_bytes=1 << 30))) == [
        f"t-{n}" for n in range(20)
    ]


class BrokerWithoutTheTopic(FakeProducer):
    """Answers, but has no trace topic until `created` (auto-creation off, say)."""

    created = False
    acknowledged: list[bytes] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        metadata = super().list_topics(topic, timeout)
        if not self.created:
            metadata.topics[topic].error = "Broker: Unknown topic or partition"
            metadata.topics[topic].partitions = {}
        return metadata

    def deliver(self, message: Message) -> int:
        self.acknowledged.append(message.value())
        return len(self.acknowledged) - 1


async def test_a_broker_without_the_topic_gets_no_trace_until_it_has_it(
    tmp_path, service, monkeypatch
):
    monkeypatch.setattr(BrokerWithoutTheTopic, "acknowledged", [])
    broker = use_producer(monkeypatch, BrokerWithoutTheTopic)
    publisher = TracePublisher("kafka:9092", service=service, spill_dir=tmp_path)
    with capture_logs() as logs:
        await publisher.start()
        for number in range(20):
            assert publisher.publish(trace(number))
        await eventually(lambda: metric("interns_traces_spilled_total", service) == 20)
        assert not publisher.connected and not broker.acknowledged
        unreachable = [log for log in logs if log["event"].startswith("kafka unreachable")]
        assert unreachable and "Unknown topic" in unreachable[0]["error"]

        broker.created = True  # an operator creates it
        await eventually(lambda: len(broker.acknowledged) == 20, within_s=15)
    await publisher.stop(drain_s=1.0)
    assert trace_ids(broker.acknowledged) == [f"t-{n}" for n in range(20)]
    assert metric("interns_traces_dropped_total", service) == 0
