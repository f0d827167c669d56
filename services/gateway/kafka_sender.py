"""Trace records handed to librdkafka (confluent-kafka), which batches, compresses and
sends them on its own threads, outside Python's interpreter lock.

The gateway's event loop is the core its calls wait on. With aiokafka, building record
batches, compressing them and reading the broker's answers ran on that loop; here the loop
only hands each record over (`produce`, a few microseconds) and reads the delivery reports.
Measured side by side at concurrency 8 (a gateway with publishing and one without, 10
paired rounds of 3 s, 2026-11-27): publishing's share of the gateway's added latency 0.13
and 0.14 in two runs with this sender, 0.23 with aiokafka's record batches in the run
between; the gateway process's CPU a call (librdkafka's threads included) about the same.

Partitions are librdkafka's `murmur2_random`: the murmur2 hash of the key, as Kafka's Java
client and aiokafka pick them, so a session's traces stay in one partition, in order,
whoever else produces to the topic.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

# Bytes of traces in one record batch (one partition's share of a produce request):
# Kafka's default limit for one batch (message.max.bytes) is 1 MiB.
MAX_BATCH_BYTES = 256 * 1024
# A record larger than this is refused before it is sent, as Kafka's own producers do at
# their default max.request.size.
MAX_RECORD_BYTES = 1024 * 1024
# Records handed to librdkafka between two yields to the event loop, so that a large batch
# never holds up the calls in flight for long.
PRODUCE_CHUNK = 64
# How often delivery reports are read while a send waits for them.
POLL_INTERVAL_S = 0.005
# The longest a connection probe blocks its thread: a broker that does not answer within it
# is probed again (with backoff) rather than holding a thread for the whole send timeout.
PROBE_TIMEOUT_S = 1.0
# How long after the send timeout a send still waits for delivery reports: librdkafka
# fails a record it could not deliver at the timeout, and reports it soon after.
REPORT_GRACE_S = 1.0
_SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE})


class Outcome(enum.Enum):
    """What became of one record handed to Kafka."""

    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record's outcome; where Kafka stored it when SENT, why not otherwise."""

    outcome: Outcome
    partition: int = -1
    offset: int = -1
    error: str = ""


class KafkaUnavailable(Exception):
    """Kafka did not answer, or does not know the topic."""


_NOT_REPORTED = Delivery(Outcome.FAILED, error="no delivery report within the send timeout")


class _Reports:
    """The delivery reports of one send, as librdkafka serves them."""

    __slots__ = ("deliveries", "pending")

    def __init__(self, count: int):
        self.deliveries: list[Delivery] = [_NOT_REPORTED] * count
        self.pending = 0

    def report(self, index: int, error: KafkaError | None, message: Any) -> None:
        self.pending -= 1
        if error is None:
            self.deliveries[index] = Delivery(Outcome.SENT, message.partition(), message.offset())
        elif error.code() in _SIZE_ERRORS:
            self.deliveries[index] = Delivery(Outcome.REJECTED, error=error.str())
        else:
            self.deliveries[index] = Delivery(Outcome.FAILED, error=error.str())


class KafkaSender:
    """Sends key/value records to one topic with acks=all and says what became of each."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        send_timeout_s: float,
        compression: str | None,  # None or "none": uncompressed
        client_id: str,
        options: dict[str, Any] | None = None,
    ):
        self._topic = topic
        self._send_timeout_s = send_timeout_s
        timeout_ms = max(1, int(send_timeout_s * 1000))
        self._config = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            # Retries may send a record twice; the trace-collector is idempotent on trace id.
            "enable.idempotence": False,
            # One request in flight per broker: a retried batch cannot overtake the next.
            "max.in.flight.requests.per.connection": 1,
            "compression.type": compression or "none",
            "partitioner": "murmur2_random",
            # The publisher gathers its batches itself (TracePublisher's linger).
            "linger.ms": 5,
            "batch.size": MAX_BATCH_BYTES,
            "message.max.bytes": MAX_RECORD_BYTES + 64 * 1024,
            # A down or hung broker fails the send within its timeout.
            "message.timeout.ms": timeout_ms,
            "request.timeout.ms": timeout_ms,
            # A broker that is away makes librdkafka log each reconnection (many a second);
            # the publisher reports the outage itself (spill, reconnect). Its errors come
            # through `error_cb`, its own log only when critical.
            "logger": logging.getLogger("interns.gateway.librdkafka"),
            "log_level": 2,
            "error_cb": _log_error,
            **(options or {}),
        }
        self._producer: Producer | None = None

    def open(self) -> None:
        """Builds the producer; raises ValueError, naming the setting, when librdkafka
        refuses the configuration (a certificate it cannot read, SASL without a user)."""
        try:
            self._producer = Producer(self._config)
        except KafkaException as error:
            reason = error.args[0].str() if error.args else str(error)
            raise ValueError(f"Kafka producer settings refused: {reason}") from None

    async def connect(self) -> None:
        """Waits until Kafka answers and knows the topic; raises `KafkaUnavailable` when it
        does not within the probe timeout."""
        if self._producer is None:
            raise KafkaUnavailable("not open")
        try:
            metadata = await asyncio.to_thread(
                self._producer.list_topics, self._topic, min(self._send_timeout_s, PROBE_TIMEOUT_S)
            )
        except KafkaException as error:
            raise KafkaUnavailable(str(error.args[0] if error.args else error)) from None
        finally:
            self._producer.poll(0)  # the errors and log lines queued meanwhile
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            reason = topic.error if topic is not None else "unknown topic"
            raise KafkaUnavailable(f"topic {self._topic}: {reason}")

    async def send(self, records: Sequence[tuple[bytes, bytes]]) -> list[Delivery]:
        """Hands `records` to librdkafka in order and waits (up to the send timeout) for the
        broker's acknowledgement of each; returns what became of each record."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected")
        reports = _Reports(len(records))
        for index, (key, value) in enumerate(records):
            if index and not index % PRODUCE_CHUNK:
                await asyncio.sleep(0)  # let the calls in flight go on
            if len(key) + len(value) > MAX_RECORD_BYTES:
                reports.deliveries[index] = Delivery(
                    Outcome.REJECTED, error=f"record larger than {MAX_RECORD_BYTES} bytes"
                )
                continue
            try:
                producer.produce(
                    self._topic, value, key, on_delivery=functools.partial(reports.report, index)
                )
            except BufferError:
                # librdkafka's queue is full (Kafka has not taken 100,000 records): this
                # record and the rest count as failed, and wait in the spill.
                break
            except KafkaException as error:
                code = error.args[0].code() if error.args else None
                outcome = Outcome.REJECTED if code in _SIZE_ERRORS else Outcome.FAILED
                reports.deliveries[index] = Delivery(outcome, error=str(error))
                continue
            reports.pending += 1
        deadline = time.monotonic() + self._send_timeout_s + REPORT_GRACE_S
        while True:
            producer.poll(0)
            if reports.pending <= 0 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL_S)
        return reports.deliveries

    def abandon(self) -> None:
        """Forgets every record not yet acknowledged (Kafka failed a send: they are sent
        again from the spill). One already on the wire may still arrive: at least once."""
        if self._producer is not None:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)

    def close(self) -> None:
        """Drops what is still queued and lets the producer go."""
        self.abandon()
        self._producer = None


def _log_error(error: KafkaError) -> None:
    # Connection errors while a broker is away repeat; the publisher reports the outage
    # itself (spill, reconnect).
    level = logging.ERROR if error.fatal() else logging.INFO
    logging.getLogger("interns.gateway.librdkafka").log(level, "kafka client: %s", error.str())
