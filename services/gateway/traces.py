"""Publishing trace events without ever blocking or failing the call.

Calls hand their trace to a bounded in-memory queue and go on; one background task
sends the queue to Kafka and keeps retrying while the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from interns.common.events import TraceRecorded
from interns.common.logging import get_logger
from interns.common.metrics import EVENTS_PUBLISHED, TRACE_SPILL_DEPTH

log = get_logger(__name__)

SEND_BATCH = 500
TRACES_DROPPED = Counter(
    "interns_traces_dropped_total", "Trace events dropped because the queue was full", ["service"]
)


class TracePublisher:
    """A non-blocking, bounded trace producer."""

    def __init__(self, bootstrap_servers: str, capacity: int = 10_000, service: str = "gateway"):
        self._bootstrap_servers = bootstrap_servers
        self._queue: asyncio.Queue[TraceRecorded] = asyncio.Queue(maxsize=capacity)
        self._service = service
        self._task: asyncio.Task | None = None
        self._producer: AIOKafkaProducer | None = None

    def publish(self, trace: TraceRecorded) -> bool:
        """Queues `trace` for Kafka; returns False (and counts it) when the queue is full."""
        try:
            self._queue.put_nowait(trace)
        except asyncio.QueueFull:
            TRACES_DROPPED.labels(self._service).inc()
            return False
        TRACE_SPILL_DEPTH.labels(self._service).set(self._queue.qsize())
        return True

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, drain_s: float = 10.0) -> None:
        """Sends what is queued (for up to `drain_s` seconds), then closes the producer."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._producer is not None:
            await self._producer.stop()
        if self._queue.qsize():
            log.warning("trace events not sent at shutdown", count=self._queue.qsize())

    async def _connect(self) -> AIOKafkaProducer:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap_servers,
                acks="all",
                linger_ms=5,
                client_id=f"interns-{self._service}",
            )
            try:
                await producer.start()
                return producer
            except KafkaError as error:
                await producer.stop()
                log.warning("kafka unreachable, traces wait in memory", error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _run(self) -> None:
        self._producer = await self._connect()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < SEND_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._send(batch)
            EVENTS_PUBLISHED.labels(self._service, TraceRecorded.topic).inc(len(batch))
            for _ in batch:
                self._queue.task_done()
            TRACE_SPILL_DEPTH.labels(self._service).set(self._queue.qsize())

    async def _send(self, batch: list[TraceRecorded]) -> None:
        """Sends `batch` until the broker acknowledges all of it. A retry may send a trace
        twice; the collector is idempotent on trace id."""
        while True:
            try:
                acks = [
                    await self._producer.send(TraceRecorded.topic, t.to_bytes(), key=t.key())
                    for t in batch
                ]
                await asyncio.gather(*acks)
                return
            except KafkaError as error:
                log.warning("trace send failed, retrying", error=str(error), count=len(batch))
                await asyncio.sleep(1.0)
