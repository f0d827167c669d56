"""Publishing trace events without ever blocking or failing the call, and without losing
one when Kafka is slow or down.

Calls hand their trace to a bounded queue in memory and go on (`publish` only appends).
Two background tasks take it from there:

- the sender sends batches to Kafka (acks=all), from memory at most one a linger, through
  librdkafka (`interns.gateway.kafka_sender`: batching, compression and the network on
  its own threads). Traces spilled to disk go first, oldest first, and leave the disk
  only once the broker has acknowledged them; then the memory queue. Traces Kafka did
  not take within the send timeout go back to memory, and Kafka is probed with backoff
  until it answers again;
- the spiller writes memory to the durable spill on disk (`SpillQueue`) while Kafka is
  away, and whenever memory passes half its capacity because Kafka is slower than the
  calls.

A trace is dropped (and counted in `interns_traces_dropped_total`, with a warning) only
when memory is full while the disk cannot keep up, or the spill is at its bound.

Delivery is at least once: a batch that timed out may still reach the broker and be sent
again from the spill; the trace-collector is idempotent on trace id. Given the
trace-collector's consumer group (COLLECTOR_GROUP_ID), acknowledged batches are also held
until the collector has committed past them, and sent again if the broker lost them
(`interns.gateway.delivery`). Order within a
session is best effort: spilled traces are sent before newer ones, but a batch that
failed is retried after traces that had already been spilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from interns.common.events import TraceRecorded
from interns.common.logging import get_logger
from interns.common.metrics import (
    EVENTS_PUBLISHED,
    TRACE_SPILL_DEPTH,
    TRACES_DROPPED,
    TRACES_HELD,
    TRACES_RELEASED_UNCONFIRMED,
    TRACES_REPLAYED,
    TRACES_RESENT,
    TRACES_SPILLED,
)
from interns.gateway.delivery import HeldTraces
from interns.gateway.kafka_sender import Delivery, KafkaSender, KafkaUnavailable, Outcome
from interns.gateway.spill import SpillQueue

log = get_logger(__name__)

# Traces taken from memory at once. The sender sends at most one batch a linger (below)
# unless memory holds a whole batch: no bound on the rate it can send.
SEND_BATCH = 2_000
# Traces wait in memory up to this long to go out in one produce request: a few large
# requests cost the gateway, the broker and the collector far less CPU than many small
# ones, and nobody waits for a trace. Measured at 800 traces/s against Tansu: 200 ms
# instead of 50 ms cut the gateway's CPU per trace by about 15% and the broker's by 40%.
LINGER_MS = 200
# Traces serialized between two yields to the event loop, so that a large batch never
# holds up the calls in flight for long.
ENCODE_CHUNK = 16
SPILL_BATCH = 1_000
DROP_WARNING_INTERVAL_S = 10.0
RESEND_PAUSE_S = 1.0
# How often the trace-collector's committed offsets are asked for, to forget the held
# traces it has stored; 32 MiB holds ~15 s of traces at 1,000 a second.
CONFIRM_INTERVAL_S = 1.0
HOLD_MAX_BYTES = 32 << 20
UNSERIALIZABLE = "trace cannot be serialized"
# Record batches compressed with snappy: agents resend the whole conversation and the
# tools with every call, and a trace's JSON shrinks about 7 times, so the kernel, the
# broker and the collector handle a seventh of the bytes. Measured in process at 1,500
# traces/s against Tansu (two runs side by side): CPU per trace sent 23 us uncompressed,
# 19.5 with zstd (level 3, a sixteenth of the bytes), 17.4 with snappy.
COMPRESSION = "snappy"


T = TypeVar("T")


class Trace(Protocol):
    """A trace event as the publisher handles it: `TraceRecorded`, or the gateway's
    `PendingTrace`, which builds the same bytes only when they are sent or spilled."""

    def key(self) -> bytes: ...

    def to_bytes(self) -> bytes: ...


class EncodedTrace:
    """A trace already serialized (one Kafka acknowledged and may have lost), to send again."""

    __slots__ = ("_key", "_value")

    def __init__(self, key: bytes, value: bytes):
        self._key = key
        self._value = value

    def key(self) -> bytes:
        return self._key

    def to_bytes(self) -> bytes:
        return self._value


class TracePublisher:
    """A non-blocking trace producer that spills to local disk while Kafka is away."""

    def __init__(
        self,
        bootstrap_servers: str,
        capacity: int = 10_000,
        service: str = "gateway",
        *,
        spill_dir: str | Path = ".interns/spill",
        spill_max_bytes: int = 1 << 30,
        send_timeout_s: float = 5.0,
        kafka_options: dict[str, Any] | None = None,
        linger_ms: int = LINGER_MS,
        confirm_group: str | None = None,
        hold_max_bytes: int = HOLD_MAX_BYTES,
        confirm_interval_s: float = CONFIRM_INTERVAL_S,
        compression: str | None = COMPRESSION,
        producer_options: dict[str, Any] | None = None,
    ):
        self._bootstrap_servers = bootstrap_servers
        # Security (interns.common.tls): aiokafka's arguments for the admin client that
        # asks for the collector's offsets, librdkafka's settings for the sender.
        self._kafka_options = kafka_options or {}
        self._kafka = KafkaSender(
            bootstrap_servers,
            TraceRecorded.topic,
            send_timeout_s=send_timeout_s,
            compression=compression,
            client_id=f"interns-{service}",
            options=producer_options,
        )
        self._capacity = capacity
        self._high_water = max(1, capacity // 2)
        self._service = service
        self._spill_dir = Path(spill_dir)
        self._spill_max_bytes = spill_max_bytes
        self._send_timeout_s = send_timeout_s
        self._linger_s = linger_ms / 1000
        self._last_send = 0.0
        self._memory: deque[Trace] = deque()
        self._in_flight: list[Trace] = []
        self._being_spilled = 0
        self._work = asyncio.Event()
        self._memory_empty = asyncio.Event()
        self._spill_wanted = asyncio.Event()
        self._kafka_up = False
        self._draining = False
        self._stopping = False
        self._spill: SpillQueue | None = None
        self._disk: ThreadPoolExecutor | None = None
        self._sender: asyncio.Task | None = None
        self._spiller: asyncio.Task | None = None
        self._unreported_drops: dict[str, int] = {}
        self._last_drop_warning = 0.0
        # Acknowledged traces held until the collector's group `confirm_group` has
        # committed past them (None: not held, Kafka's acknowledgement is enough).
        self._confirm_group = confirm_group or None
        self._confirm_interval_s = confirm_interval_s
        self._held = HeldTraces(hold_max_bytes) if self._confirm_group else None
        self._confirmer: asyncio.Task | None = None
        self._unreported_releases = 0
        self._last_release_warning = 0.0
        self._admin: AIOKafkaAdminClient | None = None
        # Read when scraped: a call's publish then only appends to memory. Through a weak
        # reference: the gauge (module-wide) must not keep a publisher alive; one that is
        # gone reads 0 until the next publisher of the service takes the gauge over.
        depth_now = weakref.WeakMethod(self._depth_now)
        TRACE_SPILL_DEPTH.labels(service).set_function(
            lambda: method() if (method := depth_now()) is not None else 0
        )
        self._published = EVENTS_PUBLISHED.labels(service, TraceRecorded.topic)
        self._spilled = TRACES_SPILLED.labels(service)
        self._replayed = TRACES_REPLAYED.labels(service)
        self._dropped_total = TRACES_DROPPED.labels(service)
        self._held_gauge = TRACES_HELD.labels(service)
        self._resent = TRACES_RESENT.labels(service)
        self._released = TRACES_RELEASED_UNCONFIRMED.labels(service)

    def publish(self, trace: Trace) -> bool:
        """Queues `trace` for Kafka and returns at once; returns False (and counts the
        trace as dropped) when memory is full or the publisher has stopped."""
        if self._stopping or len(self._memory) >= self._capacity:
            self._dropped(1, "trace queue full")
            return False
        self._memory.append(trace)
        self._memory_empty.clear()
        self._work.set()
        if self._should_spill():
            self._spill_wanted.set()
        return True

    @property
    def connected(self) -> bool:
        """Whether Kafka takes traces now (if not, they go to the spill)."""
        return self._kafka_up

    async def start(self) -> None:
        """Opens the spill (what an earlier run left there is sent first) and starts
        sending. Raises when the spill folder cannot be used."""
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-spill")
        try:
            self._spill = await self._on_disk(SpillQueue, self._spill_dir, self._spill_max_bytes)
        except (OSError, sqlite3.Error) as error:
            raise RuntimeError(
                f"trace spill folder {self._spill_dir} is not usable (GATEWAY_SPILL_DIR): {error}"
            ) from error
        try:
            self._kafka.open()
        except ValueError as error:
            await self._on_disk(self._spill.close)
            self._disk.shutdown()
            raise RuntimeError(f"trace publishing cannot start: {error}") from error
        if self._spill.pending:
            log.info("traces left in the spill will be sent first", count=self._spill.pending)
        self._note_memory_empty()
        self._sender = asyncio.create_task(self._run_sender(), name="trace-sender")
        self._spiller = asyncio.create_task(self._run_spiller(), name="trace-spiller")
        if self._held is not None:
            self._confirmer = asyncio.create_task(self._run_confirmer(), name="trace-confirmer")

    async def stop(self, drain_s: float = 10.0) -> None:
        """Sends what is in memory to Kafka for up to `drain_s` seconds and writes the rest
        to the spill, then closes. Nothing in memory is lost."""
        if self._sender is None or self._spiller is None:
            return
        self._draining = True
        self._work.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self._memory_empty.wait()
        for task in (self._sender, self._confirmer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_admin()
        if self._held is not None and self._held.count:
            # They are in Kafka; only a broker that forgets them now would lose them.
            log.info("traces not yet confirmed stored at stop", count=self._held.count)
        # The batch the sender had in flight is not known to be in Kafka: keep it.
        self._memory.extendleft(reversed(self._in_flight))
        self._in_flight = []
        self._stopping = True
        self._spill_wanted.set()
        await self._spiller
        self._kafka.close()
        self._kafka_up = False
        pending = self._spill.pending
        await self._on_disk(self._spill.close)
        self._disk.shutdown()
        self._note_memory_empty()
        if pending:
            log.info("traces kept in the spill for the next start", count=pending)
        self._report_drops(force=True)

    # --- sender -----------------------------------------------------------------------

    async def _run_sender(self) -> None:
        while True:
            if not self._kafka_up:
                await self._connect()
            try:
                if self._memory and (self._draining or not self._spill.pending):
                    await self._linger()
                    await self._send_from_memory()
                elif self._spill.pending:
                    await self._replay_spill()
                else:
                    self._work.clear()
                    await self._work.wait()
            except Exception:  # whatever went wrong with one batch, keep sending
                log.exception("trace sender failed, retrying")
                self._memory.extendleft(reversed(self._in_flight))
                self._in_flight = []
                self._note_memory_empty()
                await asyncio.sleep(RESEND_PAUSE_S)
            self._report_drops()

    async def _linger(self) -> None:
        """Waits until a linger has passed since the last send from memory began, unless
        memory holds a whole batch or the publisher is draining: at most one produce
        request a linger, and a trace after a quiet spell goes at once."""
        wait = self._last_send + self._linger_s - time.monotonic()
        if wait > 0 and not self._draining and len(self._memory) < SEND_BATCH:
            await asyncio.sleep(wait)
        self._last_send = time.monotonic()

    async def _send_from_memory(self) -> None:
        batch = [self._memory.popleft() for _ in range(min(SEND_BATCH, len(self._memory)))]
        self._in_flight = batch
        encoded: list[tuple[bytes, bytes] | None] = []
        for start in range(0, len(batch), ENCODE_CHUNK):
            if start:
                await asyncio.sleep(0)
            encoded += self._encode(batch[start : start + ENCODE_CHUNK])
        batch = [trace for trace, record in zip(batch, encoded, strict=True) if record]
        records = [record for record in encoded if record]
        self._in_flight = batch
        outcomes = await self._send(records)
        self._in_flight = []
        failed = [
            trace
            for trace, outcome in zip(batch, outcomes, strict=True)
            if outcome is Outcome.FAILED
        ]
        self._count_sent_and_rejected(outcomes)
        if failed:
            self._memory.extendleft(reversed(failed))
            await self._lose_kafka()
        self._note_memory_empty()

    async def _replay_spill(self) -> None:
        batch = await self._on_disk(self._spill.peek, SEND_BATCH)
        if batch.corrupt:
            self._dropped(batch.corrupt, "corrupt trace records in the spill")
        outcomes = await self._send([(record.key, record.value) for record in batch.records])
        done = [
            record.id
            for record, outcome in zip(batch.records, outcomes, strict=True)
            if outcome is not Outcome.FAILED
        ]
        await self._on_disk(self._spill.ack, done)
        replayed = self._count_sent_and_rejected(outcomes)
        self._replayed.inc(replayed)
        if len(done) < len(batch.records):
            await self._lose_kafka()
        self._note_memory_empty()

    async def _send(self, records: Sequence[tuple[bytes, bytes]]) -> list[Outcome]:
        """Sends `records` and waits (up to the send timeout) for the broker's
        acknowledgement of each; returns what became of each record. Acknowledged records
        are held (by partition, in runs of consecutive offsets) when the collector's
        commits are awaited."""
        deliveries = await self._kafka.send(records)
        outcomes = [delivery.outcome for delivery in deliveries]
        if self._held is not None:
            self._hold_sent(records, deliveries)
        rejected = [i for i, outcome in enumerate(outcomes) if outcome is Outcome.REJECTED]
        for index in rejected:
            self._rejected(records[index][1], deliveries[index].error)
        failed = [delivery for delivery in deliveries if delivery.outcome is Outcome.FAILED]
        if failed:
            log.warning(
                "kafka did not take traces in time, they wait in the spill",
                failed=len(failed),
                error=failed[0].error,
            )
        return outcomes

    def _hold_sent(
        self, records: Sequence[tuple[bytes, bytes]], deliveries: Sequence[Delivery]
    ) -> None:
        sent = sorted(
            (delivery.partition, delivery.offset, index)
            for index, delivery in enumerate(deliveries)
            if delivery.outcome is Outcome.SENT
        )
        run: list[tuple[bytes, bytes]] = []
        run_partition = run_base = -1
        for partition, offset, index in sent:
            if run and (partition != run_partition or offset != run_base + len(run)):
                self._hold(run_partition, run_base, run)
                run = []
            if not run:
                run_partition, run_base = partition, offset
            run.append(records[index])
        if run:
            self._hold(run_partition, run_base, run)

    def _rejected(self, value: bytes, error: str) -> None:
        log.error(
            "trace rejected by kafka, dropped",
            error=error,
            size=len(value),
            value=value[:200].decode("utf-8", errors="replace"),
        )

    def _count_sent_and_rejected(self, outcomes: Sequence[Outcome]) -> int:
        sent = outcomes.count(Outcome.SENT)
        self._published.inc(sent)
        rejected = outcomes.count(Outcome.REJECTED)
        if rejected:
            self._dropped(rejected, "trace rejected by kafka")
        return sent

    async def _connect(self) -> None:
        """Returns once Kafka answers, probed with backoff for as long as it does not."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(KafkaUnavailable),
            wait=wait_random_exponential(multiplier=0.25, max=5.0),
            before_sleep=self._log_unreachable,
        )
        await retrying(self._kafka.connect)
        self._kafka_up = True
        log.info("kafka connected, sending traces", spilled=self._spill.pending)

    def _log_unreachable(self, state: RetryCallState) -> None:
        log.warning(
            "kafka unreachable, traces go to the spill",
            error=repr(state.outcome.exception()) if state.outcome else "",
            attempt=state.attempt_number,
            spilled=self._spill.pending if self._spill else 0,
        )

    async def _lose_kafka(self) -> None:
        """Kafka failed a send: spill from now on, forget what the producer still holds
        and probe Kafka until it answers. The traces held unconfirmed go too: the broker
        may have lost them."""
        self._kafka_up = False
        if self._held is not None and self._held.count:
            self._resend(self._held.take_all(), "kafka failed a send")
        self._spill_wanted.set()
        self._kafka.abandon()
        # A broker that accepts connections but fails every send (an ACL, a full disk)
        # would otherwise be retried in a busy loop.
        await asyncio.sleep(RESEND_PAUSE_S)

    # --- held until stored (interns.gateway.delivery) ---------------------------------

    def _hold(self, partition: int, base_offset: int, records: list[tuple[bytes, bytes]]) -> None:
        resend, released = self._held.acknowledged(partition, base_offset, records)
        if resend:
            self._resend(resend, "kafka's offsets went backwards: it lost its log")
        if released:
            self._released.inc(released)
            self._unreported_releases += released
        if self._unreported_releases and (
            time.monotonic() - self._last_release_warning >= DROP_WARNING_INTERVAL_S
        ):
            # Is the trace-collector running, in consumer group COLLECTOR_GROUP_ID?
            log.warning(
                "traces released before the collector confirmed them (hold full)",
                count=self._unreported_releases,
                group=self._confirm_group,
            )
            self._unreported_releases = 0
            self._last_release_warning = time.monotonic()
        self._held_gauge.set(self._held.count)

    def _resend(self, records: list[tuple[bytes, bytes]], reason: str) -> None:
        """Puts acknowledged records Kafka may have lost back in front of memory."""
        log.warning("sending acknowledged traces again", count=len(records), reason=reason)
        self._memory.extendleft(EncodedTrace(key, value) for key, value in reversed(records))
        self._resent.inc(len(records))
        self._held_gauge.set(self._held.count)
        self._work.set()
        self._note_memory_empty()

    async def _run_confirmer(self) -> None:
        """Forgets the held traces the collector's group has committed past, every
        CONFIRM_INTERVAL_S."""
        while True:
            await asyncio.sleep(self._confirm_interval_s)
            if not self._held.count or not self._kafka_up:
                continue
            epoch = self._held.epoch
            partitions = [TopicPartition(TraceRecorded.topic, p) for p in self._held.partitions()]
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    admin = self._admin or await self._start_admin()
                    offsets = await admin.list_consumer_group_offsets(
                        self._confirm_group, partitions=partitions
                    )
            except (TimeoutError, KafkaError, OSError) as error:
                log.info("collector's offsets unavailable, traces stay held", error=repr(error))
                await self._close_admin()
                continue
            except Exception:  # whatever went wrong, keep confirming
                log.exception("asking for the collector's offsets failed, traces stay held")
                await self._close_admin()
                continue
            self._held.committed(
                {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0},
                epoch,
            )
            self._held_gauge.set(self._held.count)

    async def _start_admin(self) -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap_servers,
            client_id=f"interns-{self._service}-confirm",
            request_timeout_ms=int(self._send_timeout_s * 1000),
            **self._kafka_options,
        )
        try:
            await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin
        return admin

    async def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    # --- spiller ----------------------------------------------------------------------

    def _should_spill(self) -> bool:
        return self._stopping or not self._kafka_up or len(self._memory) >= self._high_water

    async def _run_spiller(self) -> None:
        while True:
            await self._spill_wanted.wait()
            self._spill_wanted.clear()
            while self._memory and self._should_spill():
                batch = [self._memory.popleft() for _ in range(min(SPILL_BATCH, len(self._memory)))]
                await self._write_spill(batch)
            if self._stopping:
                return

    async def _write_spill(self, batch: list[Trace]) -> None:
        """Writes `batch` to disk; on a disk error it goes back to memory for another try."""
        self._being_spilled = len(batch)
        try:
            kept, unusable = await self._on_disk(_spill_traces, self._spill, batch)
        except Exception as error:  # a disk error must not stop the spiller
            self._being_spilled = 0
            log.error("trace spill write failed", error=repr(error), count=len(batch))
            if self._stopping:
                self._dropped(len(batch), "trace spill write failed at shutdown")
                return
            self._memory.extendleft(reversed(batch))
            await asyncio.sleep(RESEND_PAUSE_S)
            self._spill_wanted.set()
            return
        self._being_spilled = 0
        self._spilled.inc(kept)
        if unusable:
            self._dropped(unusable, UNSERIALIZABLE)
        if kept < len(batch) - unusable:
            self._dropped(len(batch) - unusable - kept, "trace spill full")
        self._work.set()
        self._note_memory_empty()

    # --- helpers ----------------------------------------------------------------------

    async def _on_disk(self, function: Callable[..., T], *args) -> T:
        """Runs `function` on the spill's own thread: disk I/O never holds the event loop,
        and the spill is used by one thread only."""
        return await asyncio.get_running_loop().run_in_executor(self._disk, function, *args)

    def _encode(self, traces: Sequence[Trace]) -> list[tuple[bytes, bytes] | None]:
        records = _encode(traces)
        unusable = records.count(None)
        if unusable:
            self._dropped(unusable, UNSERIALIZABLE)
        return records

    def _in_memory(self) -> int:
        return len(self._memory) + len(self._in_flight) + self._being_spilled

    def _depth_now(self) -> int:
        """Traces not yet in Kafka: in memory, being sent or spilled, and in the spill."""
        return self._in_memory() + (self._spill.pending if self._spill else 0)

    def _note_memory_empty(self) -> None:
        """Lets `stop` know whether every trace in memory has left it."""
        if self._in_memory():
            self._memory_empty.clear()
        else:
            self._memory_empty.set()

    def _dropped(self, count: int, reason: str) -> None:
        self._dropped_total.inc(count)
        self._unreported_drops[reason] = self._unreported_drops.get(reason, 0) + count
        self._report_drops()

    def _report_drops(self, force: bool = False) -> None:
        """Warns about dropped traces at most every few seconds (with the count by reason),
        so that a long outage at the spill's bound does not flood the log."""
        now = time.monotonic()
        if self._unreported_drops and (
            force or now - self._last_drop_warning >= DROP_WARNING_INTERVAL_S
        ):
            log.warning("trace events dropped", by_reason=self._unreported_drops)
            self._unreported_drops = {}
            self._last_drop_warning = now


def _encode(traces: Sequence[Trace]) -> list[tuple[bytes, bytes] | None]:
    """The Kafka key and value of each trace; None for one that cannot be serialized
    (which no retry would change: it is dropped)."""
    records: list[tuple[bytes, bytes] | None] = []
    for trace in traces:
        try:
            records.append((trace.key(), trace.to_bytes()))
        except Exception:
            log.exception("trace cannot be serialized, dropped")
            records.append(None)
    return records


def _spill_traces(spill: SpillQueue, traces: Sequence[Trace]) -> tuple[int, int]:
    """Writes `traces` to the spill; returns how many it kept and how many could not be
    serialized. Serialized here, on the spill's thread, to keep the work off the event
    loop."""
    records = _encode(traces)
    usable = [record for record in records if record]
    return spill.put(usable), len(records) - len(usable)


class DisabledPublisher:
    """Publishes nothing (GATEWAY_TRACE_PUBLISHING=false): only for measuring what
    publishing costs; a gateway serving users always publishes."""

    connected = True

    def publish(self, trace: Trace) -> bool:
        return True

    async def start(self) -> None:
        log.warning("trace publishing is off: calls are not recorded")

    async def stop(self, drain_s: float = 10.0) -> None:
        return None
