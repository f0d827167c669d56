"""Kafka goes away while the gateway publishes: no call waits, no trace is lost, none is
stored twice.

A real Tansu broker on a free port, a TracePublisher publishing at a steady rate, and the
trace-collector's write path (an aiokafka consumer group writing with `write_traces` into
SQLite) storing continuously. Mid-way the broker is killed and started again on the same
port a few seconds later, or frozen (SIGSTOP: a hung broker that holds connections open
and answers nothing) and thawed.

Tansu keeps what it holds in memory only, so a restart loses what it had taken but the
collector had not yet read, and the collector group's offsets: Apache Kafka would keep
both. So that the count measures the gateway and not Tansu's memory, the kill waits (a
fraction of a second) until the collector has stored everything the broker acknowledged,
and the collector stops with the broker and starts again after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from sqlalchemy import text

from interns.common.db import make_engine, upgrade_database
from interns.common.events import MessageRecord, TraceRecorded, TraceRequest
from interns.gateway.traces import TracePublisher
from interns.trace_collector.store import RawRecord, parse_records, write_traces
from tests.common.tansu import Broker
from tests.conftest import assert_never_waited, eventually, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOTAL = 2_000
RATE = 200  # traces a second
OUTAGE_AFTER = 600  # traces published before the broker goes away
OUTAGE_S = 3.0
SEND_TIMEOUT_S = 2.0


class Collector:
    """The trace-collector's write path: a consumer group writing batches to the database
    with the collector's own functions."""

    def __init__(self, bootstrap: str, database_url: str):
        self.bootstrap = bootstrap
        upgrade_database(database_url)
        self.engine = make_engine(database_url)
        self.consumed = 0
        self.stored = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def rows(self) -> tuple[int, int, set[str]]:
        """How many rows, how many distinct trace ids, and which."""
        with self.engine.connect() as connection:
            count, distinct = connection.execute(
                text("SELECT count(*), count(DISTINCT trace_id) FROM traces")
            ).one()
            ids = set(connection.execute(text("SELECT trace_id FROM traces")).scalars())
        return count, distinct, ids

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            TraceRecorded.topic,
            bootstrap_servers=self.bootstrap,
            group_id="trace-collector",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            retry_backoff_ms=200,
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                records = [
                    RawRecord(r.topic, r.partition, r.offset, r.value)
                    for batch in batches.values()
                    for r in batch
                ]
                traces, dead = parse_records(records)
                assert not dead, dead
                self.consumed += len(records)
                self.stored += await asyncio.to_thread(write_traces, self.engine, traces)
        finally:
            await consumer.stop()


@pytest.fixture
async def broker(tmp_path):
    broker = Broker(free_port(), tmp_path / "tansu.log")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def collector(broker, tmp_path):
    collector = Collector(broker.address, f"sqlite:///{tmp_path / 'interns.db'}")
    collector.start()
    yield collector
    await collector.stop()
    collector.engine.dispose()


def trace(number: int) -> TraceRecorded:
    return TraceRecorded(
        trace_id=f"trace-{number:05d}",
        tenant_id="acme",
        agent_id="weather-bot",
        session_id=f"session-{number % 40}",
        request=TraceRequest(
            model="gpt-test",
            messages=[
                MessageRecord(role="system", content="You are a weather agent."),
                MessageRecord(role="user", content=f"What's the weather in city {number}?"),
            ],
        ),
        latency_ms=12.5,
    )


def metric(name: str, service: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service, **labels}) or 0.0


def acknowledged(service: str) -> float:
    return metric("interns_events_published_total", service, topic=TraceRecorded.topic)


async def publish_steadily(
    publisher: TracePublisher, begin_outage: Callable[[], Awaitable[asyncio.Task]]
) -> tuple[list[float], list[float]]:
    """Publishes TOTAL traces at RATE a second; after OUTAGE_AFTER, `begin_outage` takes
    Kafka away and returns the task that brings it back. Returns how long each publish()
    took: all of them, and those during the outage."""
    durations: list[float] = []
    during_outage: list[float] = []
    outage: asyncio.Task | None = None
    started = time.monotonic()
    for number in range(TOTAL):
        if number == OUTAGE_AFTER:
            outage = await begin_outage()
            started = time.monotonic() - number / RATE
        await asyncio.sleep(max(0.0, started + number / RATE - time.monotonic()))
        call = trace(number)
        before = time.perf_counter()
        accepted = publisher.publish(call)
        took = time.perf_counter() - before
        assert accepted, number
        durations.append(took)
        if outage is not None and not outage.done():
            during_outage.append(took)
    await outage
    return durations, during_outage


async def check_every_trace_stored_once(
    publisher: TracePublisher,
    collector: Collector,
    service: str,
    durations: list[float],
    during_outage: list[float],
) -> None:
    await eventually(lambda: collector.stored >= TOTAL, 30)
    await publisher.stop(drain_s=5.0)
    count, distinct, ids = collector.rows()
    spilled = metric("interns_traces_spilled_total", service)
    replayed = metric("interns_traces_replayed_total", service)
    print(
        f"\n{service}: published {TOTAL}, acknowledged by Kafka {acknowledged(service):.0f}, "
        f"spilled {spilled:.0f}, replayed {replayed:.0f}, consumed {collector.consumed}, "
        f"stored {count}; publish() median {statistics.median(durations) * 1e6:.0f} us, "
        f"max {max(durations) * 1000:.3f} ms ({len(during_outage)} calls during the outage, "
        f"max {max(during_outage) * 1000:.3f} ms)"
    )
    assert (count, distinct) == (TOTAL, TOTAL)
    assert ids == {trace(number).trace_id for number in range(TOTAL)}
    assert metric("interns_traces_dropped_total", service) == 0
    # The outage was real: traces waited on disk and Kafka took them from there.
    assert spilled > 0 and replayed == spilled
    assert len(during_outage) > 100
    assert_never_waited(durations)
    assert metric("interns_trace_spill_depth", service) == 0


async def test_a_killed_broker_loses_no_trace(broker, collector, tmp_path):
    service = "gateway-outage-kill"
    publisher = TracePublisher(
        broker.address, service=service, spill_dir=tmp_path, send_timeout_s=SEND_TIMEOUT_S
    )
    await publisher.start()
    await eventually(lambda: publisher.connected, 10)

    async def restart_later() -> None:
        await asyncio.sleep(OUTAGE_S)
        await broker.start()
        collector.start()

    async def kill() -> asyncio.Task:
        await eventually(lambda: collector.stored == acknowledged(service) == OUTAGE_AFTER, 15)
        await collector.stop()
        await broker.kill()
        return asyncio.create_task(restart_later())

    durations, during_outage = await publish_steadily(publisher, kill)
    await check_every_trace_stored_once(publisher, collector, service, durations, during_outage)


async def test_a_hung_broker_loses_no_trace_and_duplicates_are_stored_once(
    broker, collector, tmp_path
):
    service = "gateway-outage-hang"
    publisher = TracePublisher(
        broker.address, service=service, spill_dir=tmp_path, send_timeout_s=SEND_TIMEOUT_S
    )
    await publisher.start()
    await eventually(lambda: publisher.connected, 10)

    async def thaw_later() -> None:
        await asyncio.sleep(OUTAGE_S)
        broker.freeze(False)

    async def freeze() -> asyncio.Task:
        broker.freeze(True)
        return asyncio.create_task(thaw_later())

    durations, during_outage = await publish_steadily(publisher, freeze)
    await check_every_trace_stored_once(publisher, collector, service, durations, during_outage)


async def test_traces_spilled_before_a_restart_are_sent_first_by_the_next_gateway(broker, tmp_path):
    service = "gateway-outage-restart"
    down = TracePublisher(f"127.0.0.1:{free_port()}", service=service, spill_dir=tmp_path)
    await down.start()
    for number in range(100):
        down.publish(trace(number))
    await down.stop(drain_s=0.5)

    publisher = TracePublisher(broker.address, service=service, spill_dir=tmp_path)
    await publisher.start()
    for number in range(100, 120):
        publisher.publish(trace(number))
    consumer = AIOKafkaConsumer(
        TraceRecorded.topic, bootstrap_servers=broker.address, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: list[tuple[int, int, TraceRecorded]] = []
    try:
        async with asyncio.timeout(30):
            while len(received) < 120:
                async for record in consumer:
                    event = TraceRecorded.model_validate_json(record.value)
                    received.append((record.partition, record.offset, event))
                    break
        # The spill is acknowledged (and counted) just after Kafka acknowledged it: wait for
        # that before stopping, or the stop may cut it short (a resend the collector absorbs).
        await eventually(lambda: metric("interns_traces_replayed_total", service) >= 100, 10)
    finally:
        await consumer.stop()
        await publisher.stop(drain_s=1.0)

    assert sorted(event.trace_id for _, _, event in received) == [
        trace(number).trace_id for number in range(120)
    ]
    # Within each partition (and so each session) the older traces came first.
    for partition in {partition for partition, _, _ in received}:
        in_log_order = sorted(
            (offset, event.trace_id) for p, offset, event in received if p == partition
        )
        numbers = [int(trace_id.split("-")[1]) for _, trace_id in in_log_order]
        assert numbers == sorted(numbers)
    # The 100 spilled by the first gateway were replayed; the 20 published after the
    # restart were too if they reached the spill before the producer connected.
    assert 100 <= metric("interns_traces_replayed_total", service) <= 120
    assert acknowledged(service) == 120


async def test_traces_a_restarted_broker_forgot_are_sent_again(broker, collector, tmp_path):
    """Tansu acknowledges traces, then restarts empty before the collector read them: the
    gateway, which held them until the collector's group committed past them, sends
    them again, and the database ends with every trace once."""
    service = "gateway-outage-forgot"
    publisher = TracePublisher(
        broker.address,
        service=service,
        spill_dir=tmp_path,
        send_timeout_s=SEND_TIMEOUT_S,
        confirm_group="trace-collector",
        confirm_interval_s=0.2,
    )
    await publisher.start()
    await eventually(lambda: publisher.connected, 10)

    async def publish(numbers: range) -> None:
        for number in numbers:
            assert publisher.publish(trace(number)), number
            await asyncio.sleep(1 / RATE)

    def held() -> float:
        return metric("interns_traces_held", service)

    # Stored and committed by the collector: no longer held.
    await publish(range(300))
    await eventually(lambda: collector.rows()[1] == 300, 15)
    await eventually(lambda: held() == 0, 10)

    # Acknowledged by Kafka but not read: the collector is away.
    await collector.stop()
    await publish(range(300, 600))
    await eventually(lambda: acknowledged(service) == 600, 15)
    assert held() == 300

    await broker.kill()
    await broker.start()  # empty: memory storage
    collector.start()
    await publish(range(600, 900))

    await eventually(lambda: collector.rows()[1] == 900, 30)
    await eventually(lambda: held() == 0, 10)
    await publisher.stop(drain_s=5.0)
    count, distinct, ids = collector.rows()
    assert (count, distinct) == (900, 900)
    assert ids == {trace(number).trace_id for number in range(900)}
    assert metric("interns_traces_resent_total", service) >= 300
    assert metric("interns_traces_dropped_total", service) == 0
    assert metric("interns_traces_released_unconfirmed_total", service) == 0


async def test_traces_go_to_kafka_compressed_and_consumers_read_them_whole(
    broker, tmp_path, monkeypatch
):
    """Record batches leave the gateway snappy-compressed (GATEWAY_TRACE_COMPRESSION's
    default): the broker stores and serves them so, and a consumer (the collector's
    client) reads every trace back as it was published."""
    from aiokafka.consumer import fetcher
    from aiokafka.record.default_records import DefaultRecordBatch

    codecs: list[int] = []

    class RecordingRecords:
        """aiokafka's fetched records, noting each batch's compression codec."""

        def __init__(self, data: bytes):
            self._records = fetcher_records(data)

        def __getattr__(self, name: str):
            return getattr(self._records, name)

        def next_batch(self):
            batch = self._records.next_batch()
            if batch is not None:
                codecs.append(batch.compression_type)
            return batch

    fetcher_records = fetcher.MemoryRecords
    monkeypatch.setattr(fetcher, "MemoryRecords", RecordingRecords)
    service = "gateway-compressed"
    publisher = TracePublisher(broker.address, service=service, spill_dir=tmp_path)
    await publisher.start()
    sent = [
        TraceRecorded(
            trace_id=f"z-{number}",
            tenant_id="acme",
            session_id=f"s-{number % 3}",
            request=TraceRequest(messages=[MessageRecord(role="user", content="book " * 300)]),
        )
        for number in range(60)
    ]
    for event in sent:
        assert publisher.publish(event)
    consumer = AIOKafkaConsumer(
        TraceRecorded.topic, bootstrap_servers=broker.address, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: list[TraceRecorded] = []
    try:
        async with asyncio.timeout(30):
            async for record in consumer:
                received.append(TraceRecorded.model_validate_json(record.value))
                if len(received) == len(sent):
                    break
    finally:
        await consumer.stop()
        await publisher.stop(drain_s=1.0)

    assert sorted(received, key=lambda event: event.trace_id) == sorted(
        sent, key=lambda event: event.trace_id
    )
    assert codecs and set(codecs) == {DefaultRecordBatch.CODEC_SNAPPY}
