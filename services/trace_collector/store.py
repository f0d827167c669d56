"""Validating trace records, removing their PII, and writing them to the database,
idempotently on trace id."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import msgspec
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError

from interns.common.db import Trace
from interns.common.events import DeadLetter, TraceRecorded
from interns.common.metrics import PII_REDACTED
from interns.trace_collector.redact import AnyTrace, Redactor
from interns.trace_collector.wire import TraceWire, decode_trace, request_json, response_json

CONSUMER = "trace-collector"


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as consumed."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


def parse_records(
    records: Iterable[RawRecord],
) -> tuple[list[AnyTrace], list[DeadLetter]]:
    """Valid traces, and a dead letter (with the reason) for every record that is not one.

    The fast decoder (`wire`) takes what it vouches for; the pydantic model judges the
    rest, so what is accepted, and why a record is not, is `TraceRecorded`'s verdict."""
    traces: list[AnyTrace] = []
    dead: list[DeadLetter] = []
    for record in records:
        fast = decode_trace(record.value)
        if fast is not None:
            traces.append(fast)
            continue
        try:
            traces.append(TraceRecorded.model_validate_json(record.value or b""))
        except ValidationError as error:
            dead.append(
                DeadLetter(
                    source_topic=record.topic,
                    source_partition=record.partition,
                    source_offset=record.offset,
                    consumer=CONSUMER,
                    reason=_describe(error),
                    payload=(record.value or b"").decode("utf-8", errors="replace"),
                )
            )
    return traces, dead


def parse_and_redact(
    records: Iterable[RawRecord], redactor: Redactor
) -> tuple[list[AnyTrace], list[DeadLetter]]:
    """`parse_records`, with the PII of every trace and of every dead letter's payload
    replaced by placeholders: nothing leaves the collector, to the database or the
    dead-letter topic, unredacted."""
    traces, dead = parse_records(records)
    return [redactor.redact_trace(trace) for trace in traces], [
        _redact_dead_letter(letter, redactor) for letter in dead
    ]


def _redact_dead_letter(letter: DeadLetter, redactor: Redactor) -> DeadLetter:
    """The letter with its payload redacted as the trace's tenant's, if it names one."""
    tenant = ""
    try:
        document = json.loads(letter.payload)
        if isinstance(document, dict) and isinstance(document.get("tenant_id"), str):
            tenant = document["tenant_id"]
    except ValueError:
        pass
    payload, counts = redactor.redact_json(letter.payload, tenant)
    if not counts:
        return letter
    for kind, count in counts.items():
        PII_REDACTED.labels("trace-collector", kind).inc(count)
    return letter.model_copy(update={"payload": payload})


def _describe(error: ValidationError) -> str:
    problems = []
    for problem in error.errors()[:5]:
        where = ".".join(str(part) for part in problem["loc"]) or "record"
        problems.append(f"{where}: {problem['msg']}")
    return "invalid trace event: " + "; ".join(problems)


def trace_row(trace: AnyTrace) -> dict:
    """The `traces` row of a trace event; `request` and `response` as JSON text."""
    if isinstance(trace, TraceWire):
        request, response = request_json(trace.request), response_json(trace.response)
    else:
        request = trace.request.model_dump_json(exclude_none=True)
        # JSON null, as a JSON column stores None.
        response = trace.response.model_dump_json(exclude_none=True) if trace.response else "null"
    occurred_at = trace.occurred_at
    if occurred_at.utcoffset() is None:
        # The event's times are UTC; the column refuses a time without an offset.
        occurred_at = occurred_at.replace(tzinfo=UTC)
    return {
        "trace_id": trace.trace_id,
        "tenant_id": trace.tenant_id,
        "agent_id": trace.agent_id,
        "session_id": trace.session_id,
        "source": trace.source,
        "created_at": occurred_at,
        "request": request,
        "response": response,
        "route_target": trace.route.target,
        "route_model": trace.route.model,
        "route_model_version": trace.route.model_version,
        "route_reason": trace.route.reason,
        "task_id": trace.route.task_id or None,
        "status": trace.status,
        "error": trace.error,
        "latency_ms": trace.latency_ms,
        "cost_usd": trace.cost_usd,
    }


_ROW_COLUMNS = tuple(
    trace_row(TraceRecorded(trace_id="", tenant_id="", request={"messages": [{"role": "user"}]}))
)
_JSON_COLUMNS = frozenset(("request", "response"))


@lru_cache(maxsize=4)
def _insert_plan(dialect: Dialect) -> tuple[str, list]:
    """The insert of a batch for `dialect`, as the driver takes it, and the columns'
    conversions (times for SQLite); `request` and `response` go as the JSON text they
    are (PostgreSQL casts it)."""
    columns = (*_ROW_COLUMNS, "stored_at")
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    values = [
        f"CAST({marker} AS JSON)" if name in _JSON_COLUMNS and dialect.name != "sqlite" else marker
        for name in columns
    ]
    table = Trace.__table__
    processors = [
        None
        if name in _JSON_COLUMNS
        else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in columns
    ]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(values)}) "
        "ON CONFLICT (trace_id) DO NOTHING"
    )
    return sql, processors


def write_traces(engine: Engine, traces: Sequence[AnyTrace]) -> int:
    """Inserts `traces` in one transaction; a trace id already stored is skipped, so a
    redelivered batch never duplicates. Returns the number of new rows.

    One prepared statement executed for the whole batch by the driver (sqlite3's and
    psycopg's `executemany`, pipelined on PostgreSQL): SQLAlchemy's per-row parameter
    handling cost more than SQLite's insert itself."""
    if not traces:
        return 0
    sql, processors = _insert_plan(engine.dialect)
    # `stored_at`, the last column, is the batch's: converted once.
    *processors, process_stored_at = processors
    converted = [(slot, process) for slot, process in enumerate(processors) if process]
    stored_at = datetime.now(UTC)
    if process_stored_at:
        stored_at = process_stored_at(stored_at)
    rows = []
    for row in {trace.trace_id: trace_row(trace) for trace in traces}.values():
        values = [*row.values(), stored_at]
        for slot, process in converted:
            values[slot] = process(values[slot])
        rows.append(tuple(values))
    with engine.begin() as connection:
        # Both drivers count the rows of every execution of an executemany.
        return connection.exec_driver_sql(sql, rows).rowcount


# SQLite copies its write-ahead log into the database file (a checkpoint) when a commit
# leaves the log over 1,000 pages: about a tenth of the collector's time per trace, spent in
# the commit, before the batch is acknowledged. The collector checkpoints after the commit
# instead, on a thread, while the next batch is parsed and redacted (`checkpoint`); SQLite's
# own checkpoint stays as a backstop for a log that grows anyway (another writer's load).
WAL_BACKSTOP_PAGES = 8_000


def defer_checkpoints(engine: Engine) -> bool:
    """On SQLite, commits leave checkpoints to `checkpoint` up to WAL_BACKSTOP_PAGES of
    log; True if it should be called after each batch. A checkpoint moves committed data
    from one file to the other: a commit is as durable either way."""
    if engine.dialect.name != "sqlite":
        return False

    @event.listens_for(engine, "connect")
    def _backstop(dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")

    return True


def checkpoint(engine: Engine) -> None:
    """Copies what was committed to SQLite's write-ahead log into the database file,
    waiting for no reader or writer (a passive checkpoint; what it leaves, the next does)."""
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def database_unavailable(error: BaseException) -> bool:
    """The database did not answer (down, restarting, locked): worth waiting for."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def write_each(engine: Engine, traces: Sequence[AnyTrace]) -> tuple[int, list[DeadLetter]]:
    """`write_traces` one trace at a time, for a batch the database refused: the traces
    it takes are stored, and each it refuses (a valid event it cannot hold: a number
    beyond its integers, an id longer than its column, a NUL in PostgreSQL text) becomes
    a dead letter, so that one such trace does not stop its partition for good. Returns
    the new rows and the letters (their payload is the redacted trace)."""
    stored = 0
    dead = []
    for trace in traces:
        try:
            stored += write_traces(engine, [trace])
        except (DBAPIError, StatementError, ValueError, OverflowError) as error:
            if database_unavailable(error):
                raise  # not refused: unavailable
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            dead.append(
                DeadLetter(
                    source_topic=TraceRecorded.topic,
                    consumer=CONSUMER,
                    reason=f"the database refused trace {trace.trace_id!r}: {reason}",
                    payload=_trace_json(trace),
                )
            )
    return stored, dead


def _trace_json(trace: AnyTrace) -> str:
    if isinstance(trace, TraceWire):
        return msgspec.json.encode(trace).decode()
    return trace.model_dump_json()
