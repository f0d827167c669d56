"""The publisher hands its traces to librdkafka: a session's traces go in the order of its
calls, partitioned by session as Kafka's Java client does (on a real broker:
tests/integration/test_trace_sender.py); a trace too large for Kafka is dropped and
counted, and the others still go; the compression is the configured one."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from interns.common.events import MessageRecord, TraceRecorded, TraceRequest
from interns.gateway.kafka_sender import MAX_RECORD_BYTES
from interns.gateway.settings import GatewaySettings
from interns.gateway.traces import TracePublisher
from tests.gateway.kafka_fakes import FakeProducer, Message, use_producer

PARTITIONS = [0, 1, 2, 3]


def trace(number: int, content: str = "", sessions: int = 5) -> TraceRecorded:
    """Call `number` of session `s-{number % sessions}`."""
    return TraceRecorded(
        trace_id=f"t-{number}",
        tenant_id="acme",
        session_id=f"s-{number % sessions}",
        request=TraceRequest(messages=[MessageRecord(role="user", content=content or "hi")]),
    )


class Broker(FakeProducer):
    """Four partitions, every record acknowledged (and kept)."""

    partitions = PARTITIONS
    sent: list[Message] = []

    def deliver(self, message: Message) -> int:
        self.sent.append(message)
        return len(self.sent) - 1


@pytest.fixture
def broker(monkeypatch):
    monkeypatch.setattr(Broker, "sent", [])
    return use_producer(monkeypatch, Broker)


@pytest.fixture
def service() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def published(service: str) -> float:
    labels = {"service": service, "topic": TraceRecorded.topic}
    return REGISTRY.get_sample_value("interns_events_published_total", labels) or 0.0


def dropped(service: str) -> float:
    return REGISTRY.get_sample_value("interns_traces_dropped_total", {"service": service}) or 0.0


async def publish_all(service: str, folder, traces: list[TraceRecorded]) -> None:
    """Publishes `traces` and waits until each is sent or dropped."""
    publisher = TracePublisher("kafka:9092", service=service, spill_dir=folder)
    await publisher.start()
    for item in traces:
        assert publisher.publish(item)
    deadline = time.monotonic() + 10
    while published(service) + dropped(service) < len(traces):
        assert time.monotonic() < deadline, "the traces were not sent in time"
        await asyncio.sleep(0.02)
    await publisher.stop(drain_s=1.0)


async def test_a_sessions_traces_go_in_order_partitioned_by_session(tmp_path, service, broker):
    await publish_all(service, tmp_path, [trace(number) for number in range(40)])

    sent: dict[bytes, list[str]] = {}
    for message in broker.sent:
        sent.setdefault(message.key(), []).append(
            TraceRecorded.model_validate_json(message.value()).trace_id
        )
    assert sent == {
        f"s-{session}".encode(): [f"t-{n}" for n in range(session, 40, 5)] for session in range(5)
    }
    assert published(service) == 40
    # Kafka's Java client's partitioner: murmur2 of the key (the session).
    assert [config["partitioner"] for config in broker.made] == ["murmur2_random"]
    assert broker.made[0]["acks"] == "all"


async def test_a_trace_too_large_for_kafka_is_dropped_and_the_others_go(tmp_path, service, broker):
    too_large = trace(1, content="x" * MAX_RECORD_BYTES)
    await publish_all(service, tmp_path, [trace(0), too_large, trace(2)])

    sent = [message.value() for message in broker.sent]
    assert sorted(TraceRecorded.model_validate_json(value).trace_id for value in sent) == [
        "t-0",
        "t-2",
    ]
    assert dropped(service) == 1


@pytest.mark.parametrize(
    ("setting", "codec"), [(None, "snappy"), ("zstd", "zstd"), ("lz4", "lz4"), ("none", "none")]
)
async def test_traces_are_compressed_as_configured(
    tmp_path, service, broker, monkeypatch, setting, codec
):
    """GATEWAY_TRACE_COMPRESSION reaches the producer: snappy unless told otherwise, "none"
    sends batches as they are."""
    if setting:
        monkeypatch.setenv("GATEWAY_TRACE_COMPRESSION", setting)
    compression = GatewaySettings().trace_compression
    publisher = TracePublisher(
        "kafka:9092", service=service, spill_dir=tmp_path, compression=compression
    )
    await publisher.start()
    assert publisher.publish(trace(0))
    deadline = time.monotonic() + 5
    while not published(service):
        assert time.monotonic() < deadline, "the trace was not sent in time"
        await asyncio.sleep(0.02)
    await publisher.stop(drain_s=1.0)
    assert [config["compression.type"] for config in broker.made] == [codec]


def test_an_unknown_compression_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("GATEWAY_TRACE_COMPRESSION", "brotli")
    with pytest.raises(ValidationError, match="trace_compression"):
        GatewaySettings()


async def test_producer_settings_librdkafka_refuses_stop_the_start_naming_them(tmp_path, service):
    publisher = TracePublisher(
        "kafka:9092",
        service=service,
        spill_dir=tmp_path,
        producer_options={"security.protocol": "ssl", "ssl.ca.location": str(tmp_path / "no-ca")},
    )
    with pytest.raises(RuntimeError, match="ssl.ca.location"):
        await publisher.start()
