"""The trace publisher against a real broker (Tansu): every trace arrives once, compressed
as configured, a session's traces in one partition (the one Kafka's Java client and
aiokafka pick for the key, so other producers of the topic agree) and in the order of its
calls; a trace too large for Kafka is dropped and counted while the rest arrive."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from interns.common.events import TraceRecorded
from interns.gateway.kafka_sender import MAX_RECORD_BYTES
from interns.gateway.traces import TracePublisher
from tests.common.tansu import TRACE_PARTITIONS, Broker
from tests.conftest import eventually, free_port
from tests.gateway.test_trace_batches import dropped, published, trace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SESSIONS = 7
CALLS = 140


async def consume_all(bootstrap: str, count: int) -> list:
    consumer = AIOKafkaConsumer(
        TraceRecorded.topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.mark.parametrize("compression", ["snappy", "zstd", "none"])
async def test_traces_arrive_once_in_their_sessions_partition_in_order(tmp_path, compression):
    broker = Broker(free_port(), tmp_path / "broker.log")
    await broker.start()
    service = f"test-{uuid.uuid4().hex[:8]}"
    publisher = TracePublisher(
        broker.address,
        service=service,
        spill_dir=tmp_path / "spill",
        linger_ms=20,
        compression=compression,
    )
    try:
        await publisher.start()
        for number in range(CALLS):
            if number == 50:
                # Too large for Kafka: dropped, counted, and no other trace held up.
                assert publisher.publish(trace(-1, "x" * MAX_RECORD_BYTES, SESSIONS))
            assert publisher.publish(trace(number, sessions=SESSIONS))
            if number % 20 == 0:
                await asyncio.sleep(0.03)  # several sends, not one
        await eventually(lambda: published(service) + dropped(service) == CALLS + 1)
        records = await consume_all(broker.address, CALLS)
    finally:
        await publisher.stop(drain_s=2.0)
        await broker.stop()

    all_partitions = list(range(TRACE_PARTITIONS))
    by_session: dict[bytes, list[str]] = {}
    for record in records:
        assert record.partition == DefaultPartitioner()(record.key, all_partitions, all_partitions)
        event = TraceRecorded.model_validate_json(record.value)
        by_session.setdefault(record.key, []).append(event.trace_id)
    assert by_session == {
        f"s-{s}".encode(): [f"t-{n}" for n in range(s, CALLS, SESSIONS)] for s in range(SESSIONS)
    }
    assert len({record.partition for record in records}) > 1
    assert dropped(service) == 1
    assert published(service) == CALLS
