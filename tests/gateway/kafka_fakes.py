"""A stand-in for confluent-kafka's producer, for tests of the trace publisher (the real
broker is in tests/integration/test_kafka_outage.py and test_trace_sender.py): a subclass
says how many partitions Kafka has and what becomes of each record (`deliver`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import KafkaError

# What `deliver` returns for a record the broker never answers.
NO_ANSWER = object()


class Message:
    """Stands in for confluent-kafka's Message."""

    def __init__(self, topic: str, key: bytes, value: bytes, partition: int):
        self._topic, self._key, self._value, self._partition = topic, key, value, partition
        self._offset = -1

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Stands in for confluent-kafka's Producer: `partitions` (a record goes where Kafka's
    murmur2 partitioner puts its key), every record acknowledged (at offset 0) unless
    `deliver` says otherwise; `made` holds the configuration of each producer built."""

    partitions: list[int] = [0]
    made: list[dict[str, Any]] = []

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.made.append(config)
        self._queue: list[tuple[Message, Any]] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        partitions = {p: SimpleNamespace(id=p) for p in self.partitions}
        return SimpleNamespace(
            topics={topic: SimpleNamespace(topic=topic, partitions=partitions, error=None)}
        )

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery=None, **_options) -> None:
        partition = DefaultPartitioner()(key, self.partitions, self.partitions)
        self._queue.append((Message(topic, key, value, partition), on_delivery))

    def poll(self, timeout: float = 0) -> int:
        queue, self._queue = self._queue, []
        served = 0
        for message, on_delivery in queue:
            answer = self.deliver(message)
            if answer is NO_ANSWER:
                self._queue.append((message, on_delivery))
                continue
            if isinstance(answer, int):
                message._offset = answer
                answer = None
            served += 1
            if on_delivery is not None:
                on_delivery(answer, message)
        return served

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True):
        self._queue.clear()

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return len(self._queue)

    def deliver(self, message: Message) -> int | KafkaError | object:
        """Kafka's answer to `message`: the offset it was stored at, an error, or
        NO_ANSWER (a broker that never answers)."""
        return 0


def use_producer(monkeypatch, producer: type[FakeProducer]) -> type[FakeProducer]:
    """Makes the trace publisher hand its records to `producer` instead of Kafka."""
    monkeypatch.setattr(producer, "made", [])
    monkeypatch.setattr("interns.gateway.kafka_sender.Producer", producer)
    return producer
