"""The collector's FastStream transport: a batch of trace records in, rows and dead letters out.

Every trace and every dead letter is redacted (PII replaced by placeholders) before it is
written or published.

Offsets are committed (acked) only after the database commit, so a crash redelivers the
batch and the idempotent write absorbs the repeat. A bad record never stops the consumer:
it goes to the dead-letter topic. While the database is unavailable (down, restarting,
locked) the batch's write is retried with backoff, then the batch is handed back to Kafka
(nack: the consumer rewinds to it) and the next attempt starts over.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.engine import Engine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from interns.common.events import DeadLetter, TraceRecorded
from interns.common.logging import get_logger
from interns.common.metrics import EVENTS_CONSUMED, EVENTS_PUBLISHED, TRACES_STORED
from interns.trace_collector.redact import Redactor
from interns.trace_collector.settings import LOCAL_REDACTION_KEY, CollectorSettings
from interns.trace_collector.store import (
    RawRecord,
    checkpoint,
    database_unavailable,
    defer_checkpoints,
    parse_and_redact,
    write_each,
    write_traces,
)

log = get_logger(__name__)


def _log_retry(state: RetryCallState) -> None:
    log.warning(
        "database unavailable, retrying the batch",
        attempt=state.attempt_number,
        error=str(state.outcome.exception()).splitlines()[0],
    )


async def _write_when_available(engine: Engine, traces: list, give_up_s: float) -> int:
    """`write_traces`, retried with backoff for `give_up_s` while the database is
    unavailable; kept below Kafka's poll interval, or the group would evict the member."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(database_unavailable),
        wait=wait_exponential(multiplier=0.1, max=5.0),
        stop=stop_after_delay(give_up_s),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await asyncio.to_thread(write_traces, engine, traces)
    raise AssertionError("unreachable: tenacity returns or raises")


async def _store(engine: Engine, traces: list, give_up_s: float) -> tuple[int, list[DeadLetter]]:
    """The batch written (new rows), and dead letters for the traces the database refused.
    Raises when the database stays unavailable: the batch goes back to Kafka."""
    try:
        return await _write_when_available(engine, traces, give_up_s), []
    except Exception as error:
        if database_unavailable(error):
            raise
        # A trace the database cannot hold: the others are stored, it is dead-lettered.
        return await asyncio.to_thread(write_each, engine, traces)


def _readable_headers(record: Any) -> Any:
    """The record with every header value UTF-8 (bytes that are not are replaced)."""
    if all(_is_utf8(value) for _, value in record.headers or ()):
        return record
    headers = [(key, value.decode(errors="replace").encode()) for key, value in record.headers]
    return dataclasses.replace(record, headers=headers)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


async def _tolerant_headers(records: tuple, parse) -> Any:
    """FastStream's batch parser decodes every header as UTF-8: one header that is not
    failed the whole batch at every redelivery, and the collector stopped reading (found
    by tests/fuzz). The collector reads no header, so bad bytes are replaced."""
    return await parse(tuple(map(_readable_headers, records)))


async def _raw_values(message) -> list[Any]:
    """Skips FastStream's JSON decoding: records are validated one by one in `store`."""
    return [record.value for record in message.raw_message]


class _Checkpoints:
    """`checkpoint` on a thread after a batch is stored, one at a time: it overlaps the
    next batch's parsing and redaction instead of delaying the acknowledgement."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._running: asyncio.Task | None = None

    def after_batch(self) -> None:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(checkpoint, self._engine)
        except Exception as error:  # the next batch's commit tries again
            log.warning("checkpoint failed", error=str(error).splitlines()[0])


def register(broker: KafkaBroker, engine: Engine, settings: CollectorSettings) -> None:
    """Subscribes the collector's handler to the trace topic."""
    dead_letters = broker.publisher(DeadLetter.topic, schema=DeadLetter)
    key = settings.redaction_key.get_secret_value()
    if key == LOCAL_REDACTION_KEY:
        log.warning(
            "COLLECTOR_REDACTION_KEY is not set: PII placeholders use the public local key, "
            "against which anyone can test a guessed value; set a secret outside local use"
        )
    redactor = Redactor(key.encode(), settings.phone_regions, settings.redaction_remembered_chars)
    checkpoints = _Checkpoints(engine) if defer_checkpoints(engine) else None

    @broker.subscriber(
        TraceRecorded.topic,
        group_id=settings.group_id,
        batch=True,
        max_records=settings.batch_size,
        batch_timeout_ms=settings.batch_timeout_ms,
        max_partition_fetch_bytes=settings.fetch_bytes_per_partition,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=_tolerant_headers,
        decoder=_raw_values,
    )
    async def store_traces(body: list[Any], message: KafkaMessage) -> None:
        records = [RawRecord(r.topic, r.partition, r.offset, r.value) for r in message.raw_message]
        # CPU work (validation, redaction: about 60 of the 94 us a trace costs) off the loop.
        traces, dead = await asyncio.to_thread(parse_and_redact, records, redactor)
        stored, refused = await _store(engine, traces, settings.database_retry_s)
        if checkpoints:
            checkpoints.after_batch()
        for letter in dead + refused:
            await dead_letters.publish(letter.model_dump(mode="json"), key=letter.key())
            EVENTS_PUBLISHED.labels("trace-collector", DeadLetter.topic).inc()
            log.warning(
                "trace sent to dead letters",
                reason=letter.reason,
                partition=letter.source_partition,
                offset=letter.source_offset,
            )
        TRACES_STORED.labels("trace-collector").inc(stored)
        consumed = EVENTS_CONSUMED.labels
        consumed("trace-collector", TraceRecorded.topic, "stored").inc(len(traces) - len(refused))
        consumed("trace-collector", TraceRecorded.topic, "dead_letter").inc(len(dead + refused))
