"""Kafka publishing for the synchronous training worker.

Celery tasks are plain functions; Kafka's client is asyncio. `EventPublisher` runs an
`AIOKafkaProducer` on an event loop of its own thread. Progress events are fire-and-forget
(training never waits for, or fails because of, Kafka); `publish_and_wait` is for the
events a consumer must not miss (a model registered), with a bound on the wait.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from aiokafka import AIOKafkaProducer

from interns.common.events import Event, TrainingJobProgress
from interns.common.logging import get_logger
from interns.common.metrics import EVENTS_PUBLISHED, record_training_progress

log = get_logger(__name__)


class EventPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str = "interns-trainer-worker",
        kafka_options: dict[str, Any] | None = None,
    ):
        self._bootstrap_servers = bootstrap_servers
        self._kafka_options = kafka_options or {}  # security (interns.common.tls)
        self._client_id = client_id
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    def start(self) -> EventPublisher:
        self._thread.start()
        return self

    async def _send(self, event: Event) -> None:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap_servers,
                    client_id=self._client_id,
                    acks="all",
                    request_timeout_ms=15_000,
                    **self._kafka_options,
                )
                await producer.start()
                self._producer = producer
        await self._producer.send_and_wait(event.topic, event.to_bytes(), key=event.key())
        EVENTS_PUBLISHED.labels("trainer", event.topic).inc()
        if isinstance(event, TrainingJobProgress):
            record_training_progress(
                "trainer-worker", event.task_id, event.status, event.step, event.total_steps
            )

    def _submit(self, event: Event) -> Future:
        future = asyncio.run_coroutine_threadsafe(self._send(event), self._loop)
        future.add_done_callback(
            lambda done: (
                done.exception()
                and log.warning(
                    "event not published", topic=event.topic, error=repr(done.exception())
                )
            )
        )
        return future

    def publish(self, event: Event) -> None:
        """Sends `event` in the background; a failure is logged, never raised."""
        self._submit(event)

    def publish_and_wait(self, event: Event, timeout_s: float = 30.0) -> bool:
        """Sends `event` and waits up to `timeout_s` for the broker's acknowledgement."""
        try:
            self._submit(event).result(timeout_s)
            return True
        except Exception:
            return False

    def close(self, timeout_s: float = 10.0) -> None:
        async def stop() -> None:
            if self._producer is not None:
                await self._producer.stop()

        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout_s)
            except Exception as error:
                log.warning("kafka producer did not stop cleanly", error=repr(error))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
