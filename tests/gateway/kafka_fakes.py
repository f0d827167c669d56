"""A stand-in for aiokafka's producer and its record batches, for tests of the trace
publisher's batches: a subclass says how many partitions Kafka has, how many records a
batch holds and what becomes of each batch sent (`deliver`)."""

from __future__ import annotations

import asyncio


class RecordBatch:
    """Stands in for aiokafka's record batch: it holds `capacity` records."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, timestamp: float | None, key: bytes, value: bytes) -> bool | None:
        if len(self.records) == self.capacity:
            return None
        self.records.append((key, value))
        return True

    @property
    def values(self) -> list[bytes]:
        return [value for _, value in self.records]

    def close(self) -> None:
        pass


class FakeProducer:
    """Stands in for aiokafka's producer: `partitions`, batches of `batch_capacity`
    records, and every batch acknowledged unless `deliver` says otherwise."""

    partitions: list[int] = [0]
    batch_capacity = 10

    def __init__(self, **_settings):
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return set(self.partitions)

    def create_batch(self) -> RecordBatch:
        return RecordBatch(self.batch_capacity)

    async def send_batch(self, batch: RecordBatch, topic: str, *, partition: int) -> asyncio.Future:
        delivery = asyncio.get_running_loop().create_future()
        self.deliver(partition, batch, delivery)
        return delivery

    def deliver(self, partition: int, batch: RecordBatch, delivery: asyncio.Future) -> None:
        """Settles `delivery`, Kafka's answer to `batch`; leaving it pending is a broker
        that never answers."""
        delivery.set_result(None)


def use_producer(monkeypatch, producer: type[FakeProducer]) -> type[FakeProducer]:
    """Makes the trace publisher hand its batches to `producer` instead of Kafka."""
    monkeypatch.setattr("interns.gateway.traces.AIOKafkaProducer", producer)
    return producer
