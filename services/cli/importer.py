"""`interns import`: existing LLM-call logs into the trace topic, as if the gateway had seen
them, so that they are stored, curated and mined like live traffic.

Every format `interns.expert.replay.load_workload` reads is accepted: OpenAI-format logs
(one `{"request", "response", "metadata"?}` object a line), SGD tool calls and BFCL
question files. Each record becomes one `TraceRecorded` event:

- the tenant is the one the operator names: a tenant a record names is ignored, as the
  gateway ignores one a client sends; a record's metadata may name its `agent_id` and
  `session_id` (SGD: the dialogue, BFCL: the item);
- `source` is `import:<file name>:<line>`, the provenance of the trace;
- the trace id is derived from the tenant, the file name, the line number and the record
  itself, so re-importing the same file (from any folder) gives the same ids and the
  trace-collector, idempotent on trace id, stores each line once; a rotated log whose
  line 3 now holds another call still gets that call stored;
- the call's time is the response's `created` (or `created_at` / `timestamp` in the
  metadata) when the log has one, otherwise the time of the import: retention counts
  from it.

A line that cannot be read, or whose record is not a valid trace, is skipped and reported
with its line number; the rest is published.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from interns.common.events import RouteRecord, TraceRecorded, TraceRequest, TraceResponse
from interns.common.settings import SecureSettings
from interns.common.tls import kafka_client_options
from interns.expert.replay import WorkloadError, WorkloadRecord, load_workload

MAX_REPORTED_LINES = 10
SEND_BATCH = 500
# The `traces` columns these land in are this long; a longer value would fail the batch
# it is written with (PostgreSQL checks lengths), so the line is refused here instead.
MAX_AGENT_ID = 128
MAX_SESSION_ID = 256

_TIMESTAMP = TypeAdapter(datetime)


class ImportFailed(Exception):
    """Nothing can be imported from the file, or the broker is out of reach; the message
    says why."""


@dataclass(frozen=True)
class SkippedLine:
    """A line of the file that was not imported, and why."""

    line: int
    reason: str


@dataclass
class ImportBatch:
    """The traces read from one file and what was skipped of it."""

    path: Path
    format: str
    tenant_id: str
    traces: list[TraceRecorded] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    skipped_count: int = 0
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    without_answer: Counter[str] = field(default_factory=Counter)

    def skip(self, line: int, reason: str) -> None:
        self.skipped_count += 1
        self.skipped_lines.append(SkippedLine(line, reason))
        self.skipped_lines.sort(key=lambda skipped: skipped.line)
        del self.skipped_lines[MAX_REPORTED_LINES:]


def import_trace_id(tenant_id: str, file_name: str, line: int, record: WorkloadRecord) -> str:
    """The trace id of a record imported from line `line` of `file_name`: the same on every
    import of the same file for the same tenant."""
    content = json.dumps(
        [record.request, record.answer], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    seed = "\0".join([tenant_id, file_name, str(line), content])
    return "imp-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def _content(content: Any) -> str | None:
    """Message content as the trace keeps it, one string: text parts are joined, other
    parts (images, audio) kept as JSON."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            if isinstance(part, Mapping) and part.get("type") == "text"
            else json.dumps(part, ensure_ascii=False)
            for part in content
        ]
        return "\n".join(texts)
    return json.dumps(content, ensure_ascii=False)


def _tool_calls(message: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    calls = list(message.get("tool_calls") or [])
    if not calls and isinstance(message.get("function_call"), Mapping):
        calls = [{"function": message["function_call"]}]  # the API's legacy shape
    if not calls:
        return None
    normal = []
    for call in calls:
        function = dict(call.get("function") or {})
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            function["arguments"] = json.dumps(arguments, ensure_ascii=False)
        normal.append({"id": call.get("id") or "", "type": "function", "function": function})
    return normal


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "role": message.get("role"),
        "content": _content(message.get("content")),
        "name": message.get("name"),
        "tool_call_id": message.get("tool_call_id"),
        "tool_calls": _tool_calls(message),
    }


def _occurred_at(metadata: Mapping[str, Any], imported_at: datetime) -> datetime:
    for name in ("created_at", "timestamp", "created"):
        if metadata.get(name) not in (None, ""):
            try:
                when = _TIMESTAMP.validate_python(metadata[name])
            except ValidationError:
                raise ValueError(f"metadata.{name}: not a time: {metadata[name]!r}") from None
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return imported_at


def _text_field(metadata: Mapping[str, Any], name: str, longest: int) -> str:
    value = metadata.get(name)
    text = "" if value is None else str(value)
    if len(text) > longest:
        raise ValueError(f"metadata.{name}: {len(text)} characters, at most {longest}")
    return text


def trace_of(
    record: WorkloadRecord, tenant_id: str, file_name: str, imported_at: datetime
) -> TraceRecorded:
    """The trace event of an imported record. Raises ValueError (pydantic's
    ValidationError among them) when the record cannot be a trace."""
    metadata = record.metadata
    line = int(metadata.get("line", 0))
    request = record.request
    usage = metadata.get("usage") if isinstance(metadata.get("usage"), Mapping) else {}
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens"))
    return TraceRecorded(
        trace_id=import_trace_id(tenant_id, file_name, line, record),
        occurred_at=_occurred_at(metadata, imported_at),
        tenant_id=tenant_id,
        agent_id=_text_field(metadata, "agent_id", MAX_AGENT_ID),
        session_id=_text_field(metadata, "session_id", MAX_SESSION_ID),
        source=f"import:{file_name}:{line}",
        request=TraceRequest(
            model=request.get("model") or "",
            messages=[_message(message) for message in request.get("messages") or []],
            tools=request.get("tools") or [],
            tool_choice=request.get("tool_choice"),
            response_format=request.get("response_format"),
            temperature=request.get("temperature"),
            max_tokens=max_tokens,
        ),
        response=TraceResponse(
            model=metadata.get("response_model") or request.get("model") or "",
            message=_message(record.answer),
            finish_reason=record.finish_reason,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        route=RouteRecord(target="expert", model=metadata.get("response_model") or ""),
    )


def _reason(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        problems = []
        for problem in error.errors()[:3]:
            where = ".".join(str(part) for part in problem["loc"]) or "record"
            problems.append(f"{where}: {problem['msg']}")
        return "not a valid trace: " + "; ".join(problems)
    return str(error)


def read_traces(
    path: str | Path, tenant_id: str, imported_at: datetime | None = None
) -> ImportBatch:
    """The trace events of every record of the file at `path`, and the lines skipped.

    Raises ImportFailed when the file is missing, unreadable or holds no record of a known
    format."""
    path = Path(path)
    try:
        workload = load_workload(path)
    except FileNotFoundError:
        raise ImportFailed(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFailed(f"{path}: is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFailed(f"{path}: cannot be read: {error}") from None
    except WorkloadError as error:
        raise ImportFailed(str(error)) from None
    imported_at = imported_at or datetime.now(UTC)
    # A BFCL answer file is read through its question file: provenance names the latter.
    file_name = workload.path.name
    batch = ImportBatch(path=workload.path, format=workload.format, tenant_id=tenant_id)
    for line in workload.malformed_lines:
        batch.skip(
            line, f"not a record of the {workload.format} format (not JSON, or fields missing)"
        )
    # Only the first malformed lines are numbered by the reader; the rest are counted.
    batch.skipped_count += workload.malformed_count - len(workload.malformed_lines)
    batch.without_answer = Counter(workload.skipped)
    for record in workload.records:
        try:
            trace = trace_of(record, tenant_id, file_name, imported_at)
        except ValueError as error:
            batch.skip(int(record.metadata.get("line", 0)), _reason(error))
            continue
        batch.traces.append(trace)
        batch.lines[trace.trace_id] = int(record.metadata.get("line", 0))
    return batch


class Producer(Protocol):
    """What publishing needs of a Kafka producer (aiokafka's, or a test's)."""

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any: ...


@asynccontextmanager
async def kafka_producer(bootstrap_servers: str, timeout_s: float = 30.0) -> AsyncIterator:
    """A started aiokafka producer (acks=all); ImportFailed when the broker is unreachable."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=20,
        request_timeout_ms=int(timeout_s * 1000),
        client_id="interns-import",
        **kafka_client_options(SecureSettings()),
    )
    try:
        await producer.start()
    except KafkaError as error:
        await producer.stop()
        raise ImportFailed(
            f"the Kafka broker at {bootstrap_servers} is unreachable ({error}): start the"
            " stack with 'interns up', or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    try:
        yield producer
    finally:
        await producer.stop()


@dataclass
class PublishOutcome:
    """How many traces the broker acknowledged, and which it did not take."""

    published: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


async def publish_traces(
    traces: Sequence[TraceRecorded],
    producer: Producer,
    on_published: Callable[[int], None] = lambda count: None,
) -> PublishOutcome:
    """Publishes `traces` to the trace topic, keyed by session, in batches; `on_published`
    hears how many each batch settled. A trace the broker refuses (too large, for one) is
    listed in `failed`; when a whole batch is refused the broker is gone and the rest is
    not tried."""
    outcome = PublishOutcome()
    for start in range(0, len(traces), SEND_BATCH):
        batch = traces[start : start + SEND_BATCH]
        pending = []
        for trace in batch:
            try:
                pending.append(
                    (trace, await producer.send(TraceRecorded.topic, trace.to_bytes(), trace.key()))
                )
            except KafkaError as error:
                outcome.failed.append((trace.trace_id, str(error) or type(error).__name__))
        acknowledged = 0
        for trace, delivery in pending:
            try:
                await delivery
                acknowledged += 1
            except KafkaError as error:
                outcome.failed.append((trace.trace_id, str(error) or type(error).__name__))
        outcome.published += acknowledged
        on_published(len(batch))
        if not acknowledged:
            for trace in traces[start + SEND_BATCH :]:
                outcome.failed.append((trace.trace_id, "not sent: the broker took nothing"))
            break
    return outcome


async def publish_file(
    batch: ImportBatch, bootstrap_servers: str, on_published: Callable[[int], None]
) -> PublishOutcome:
    """Publishes the traces of `batch` to the brokers at `bootstrap_servers`."""
    async with kafka_producer(bootstrap_servers) as producer:
        return await publish_traces(batch.traces, producer, on_published)


def skipped_report(batch: ImportBatch) -> list[str]:
    """One line for each line skipped (the first ones), then the counts of the rest."""
    name = batch.path.name
    report = [
        f"{name}:{skipped.line}: skipped: {skipped.reason}" for skipped in batch.skipped_lines
    ]
    if batch.skipped_count > len(batch.skipped_lines):
        report.append(
            f"... and {batch.skipped_count - len(batch.skipped_lines)} more lines skipped"
        )
    report += [
        f"{count} records skipped: {reason}" for reason, count in batch.without_answer.items()
    ]
    return report


def failed_report(batch: ImportBatch, outcome: PublishOutcome) -> list[str]:
    """One line for each trace the broker did not take (the first ones)."""
    return [
        f"{batch.path.name}:{batch.lines[trace_id]}: not published: {reason}"
        for trace_id, reason in outcome.failed[:MAX_REPORTED_LINES]
    ]


def summary(batch: ImportBatch, outcome: PublishOutcome) -> str:
    """What the import did, in one sentence."""
    skipped = batch.skipped_count + sum(batch.without_answer.values())
    text = (
        f"{batch.path.name} ({batch.format}): {outcome.published} loaded into"
        f" {TraceRecorded.topic} as tenant {batch.tenant_id!r}, {skipped} skipped"
    )
    if batch.skipped_lines:
        text += f" (first lines: {', '.join(str(s.line) for s in batch.skipped_lines)})"
    if outcome.failed:
        text += f", {len(outcome.failed)} not published"
    return text + "; the trace-collector stores each line once"
