"""Dead letters for the typed Kafka consumers (router, trainer, deploy controller).

Their handlers take one event model each. A record that is not that event (bytes that are
not JSON, JSON of another shape, an unknown `schema_version`, a header that is not UTF-8)
goes to `interns.deadletter.v1` with the reason and the original bytes, and the consumer
goes on with the next record; the handler never sees it. Errors of the handler itself
(a valid event it failed on) are not dead-lettered: they keep FastStream's behaviour.

FastStream 0.7 takes middlewares per broker or per router, not per subscriber, so the
consumers subscribe on the `KafkaRouter` that `dead_letter_router` returns. The
trace-collector does its own dead-lettering in batches (`interns.trace_collector.store`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker, KafkaRouter
from pydantic import ValidationError

from interns.common.events import ALL_EVENTS, DeadLetter, Event
from interns.common.logging import get_logger
from interns.common.metrics import EVENTS_CONSUMED, EVENTS_PUBLISHED

log = get_logger(__name__)

EVENTS_BY_TOPIC: dict[str, type[Event]] = {event.topic: event for event in ALL_EVENTS}

SendLetter = Callable[[DeadLetter], Awaitable[Any]]


def describe_invalid(event: type[Event], error: ValidationError) -> str:
    """The reason a dead letter gives: the first problems pydantic found, with their place."""
    problems = []
    for problem in error.errors()[:5]:
        where = ".".join(str(part) for part in problem["loc"]) or "record"
        problems.append(f"{where}: {problem['msg']}")
    return f"invalid {event.__name__} event: " + "; ".join(problems)


def invalid_reason(event: type[Event], decoded: Any) -> str | None:
    """Why `decoded` (the record as FastStream decoded it: a JSON value, or the raw bytes
    when they are not JSON) is not an `event`; None when it is one."""
    if isinstance(decoded, bytes | bytearray | str):
        return f"not a JSON object: {event.__name__} expected"
    try:
        event.model_validate(decoded)
    except ValidationError as error:
        return describe_invalid(event, error)
    return None


def letter_of(record: Any, consumer: str, reason: str) -> DeadLetter:
    """The dead letter of a consumed Kafka record (aiokafka's ConsumerRecord)."""
    value = record.value if isinstance(record.value, bytes) else b""
    return DeadLetter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        consumer=consumer,
        reason=reason[:2000],
        payload=value.decode("utf-8", errors="replace"),
    )


class DeadLetterMiddleware(BaseMiddleware):
    """Checks each record against its topic's event before the handler runs; one that is
    not the event, or that FastStream could not even decode, becomes a dead letter and is
    acknowledged, so the consumer moves on."""

    def __init__(self, msg: Any, /, *, context: Any, consumer: str, send: SendLetter):
        super().__init__(msg, context=context)
        self._consumer = consumer
        self._send = send
        self._reached = False

    async def _dead_letter(self, record: Any, reason: str) -> None:
        letter = letter_of(record, self._consumer, reason)
        await self._send(letter)
        EVENTS_PUBLISHED.labels(self._consumer, DeadLetter.topic).inc()
        EVENTS_CONSUMED.labels(self._consumer, letter.source_topic, "dead_letter").inc()
        log.warning(
            "event sent to dead letters",
            topic=letter.source_topic,
            partition=letter.source_partition,
            offset=letter.source_offset,
            reason=reason,
        )

    async def consume_scope(self, call_next, msg):
        self._reached = True
        record = msg.raw_message
        event = EVENTS_BY_TOPIC.get(record.topic)
        if event is None:
            return await call_next(msg)
        try:
            decoded = await msg.decode()
        except Exception as error:  # a JSON content type over bytes that are not JSON
            reason = f"undecodable record: {error!r}"
        else:
            reason = invalid_reason(event, decoded)
        if reason is not None:
            await self._dead_letter(record, reason)
            return None
        return await call_next(msg)

    async def after_processed(self, exc_type=None, exc_val=None, exc_tb=None) -> bool:
        # Parsing (headers that are not UTF-8) happens before `consume_scope`: an error
        # there is the record's fault.
        if exc_val is None or self._reached or not isinstance(exc_val, Exception):
            return False
        await self._dead_letter(self.msg, f"undecodable record: {exc_val!r}"[:2000])
        return True


def dead_letter_router(broker: KafkaBroker, consumer: str) -> KafkaRouter:
    """A router whose subscribers dead-letter what is not their topic's event, publishing
    on `broker`; include it in the broker (`broker.include_router`) after subscribing."""
    publisher = broker.publisher(DeadLetter.topic, schema=DeadLetter)

    async def send(letter: DeadLetter) -> None:
        await publisher.publish(letter.model_dump(mode="json"), key=letter.key())

    middleware = functools.partial(DeadLetterMiddleware, consumer=consumer, send=send)
    return KafkaRouter(middlewares=[middleware])
