"""`interns import`: a log file becomes trace events with provenance, bad lines are named
and skipped, and a re-import gives the same trace ids (the collector stores them once)."""

from __future__ import annotations

import asyncio
import json
import shutil
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from typer.testing import CliRunner

from interns.cli import importer
from interns.cli.importer import ImportFailed, publish_traces, read_traces
from interns.cli.main import app
from interns.common.events import TraceRecorded
from tests.conftest import SGD, free_port, openai_log_line

CITIES = ["Paris", "Lima", "Oslo", "Kyoto"]


class RecordingProducer:
    """Takes what aiokafka's producer takes; the broker acknowledges at once, or refuses
    what `refuse` says."""

    def __init__(self, refuse=lambda value: None):
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self._refuse = refuse

    async def send(self, topic: str, value: bytes, key: bytes | None = None):
        delivery = asyncio.get_running_loop().create_future()
        error = self._refuse(value)
        if error is not None:
            delivery.set_exception(error)
        else:
            self.sent.append((topic, value, key))
            delivery.set_result(None)
        return delivery


def write_log(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def log_with_a_bad_line(tmp_path):
    """Line 3 is cut short (not JSON), line 5 has a message role no chat API knows."""
    good = [json.dumps(openai_log_line(city, f"s-{city}")) for city in CITIES]
    wrong_role = openai_log_line("Rome", "s-Rome")
    wrong_role["request"]["messages"][1]["role"] = "robot"
    return write_log(
        tmp_path / "calls.jsonl",
        [good[0], good[1], good[2][:40], json.dumps(wrong_role), good[3], good[2]],
    )


def test_a_malformed_line_is_named_and_skipped_and_the_rest_is_published(log_with_a_bad_line):
    batch = read_traces(log_with_a_bad_line, "acme")
    producer = RecordingProducer()
    outcome = asyncio.run(publish_traces(batch.traces, producer))

    assert [(s.line, s.reason.split(":")[0]) for s in batch.skipped_lines] == [
        (3, "not a record of the openai_log format (not JSON, or fields missing)"),
        (4, "not a valid trace"),
    ]
    assert "messages.1.role" in batch.skipped_lines[1].reason
    assert outcome.published == 4 and not outcome.failed
    published = [TraceRecorded.model_validate_json(value) for _, value, _ in producer.sent]
    assert [t.source for t in published] == [
        "import:calls.jsonl:1",
        "import:calls.jsonl:2",
        "import:calls.jsonl:5",
        "import:calls.jsonl:6",
    ]
    assert {topic for topic, _, _ in producer.sent} == {"interns.traces.v1"}
    assert [key for _, _, key in producer.sent] == [b"s-Paris", b"s-Lima", b"s-Kyoto", b"s-Oslo"]
    first = published[0]
    assert (first.tenant_id, first.session_id, first.status) == ("acme", "s-Paris", "ok")
    assert first.request.messages[1].content == "What's the weather in Paris tomorrow?"
    assert first.response.message.tool_calls[0].function.name == "GetWeather"
    assert (first.response.prompt_tokens, first.response.completion_tokens) == (30, 12)


def test_a_reimport_gives_the_same_trace_ids_from_any_folder(log_with_a_bad_line, tmp_path):
    first = read_traces(log_with_a_bad_line, "acme", datetime(2026, 1, 1, tzinfo=UTC))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(log_with_a_bad_line, moved / "calls.jsonl")
    again = read_traces(moved / "calls.jsonl", "acme", datetime(2026, 2, 1, tzinfo=UTC))
    ids = [t.trace_id for t in first.traces]
    assert ids == [t.trace_id for t in again.traces]
    assert len(set(ids)) == 4, "lines 5 and 6 ask the same, yet are two calls"
    other_tenant = read_traces(log_with_a_bad_line, "globex")
    assert not set(ids) & {t.trace_id for t in other_tenant.traces}


def test_a_line_that_now_holds_another_call_gets_a_new_id(tmp_path):
    path = write_log(tmp_path / "app.log", [json.dumps(openai_log_line("Paris", "s-1"))])
    before = read_traces(path, "acme").traces[0].trace_id
    write_log(path, [json.dumps(openai_log_line("Lima", "s-1"))])  # the log was rotated
    assert read_traces(path, "acme").traces[0].trace_id != before


def test_the_time_of_the_call_comes_from_the_log(tmp_path):
    line = openai_log_line("Paris", "s-1")
    line["response"]["created"] = 1_700_000_000
    dated = openai_log_line("Lima", "s-2")
    dated["metadata"]["created_at"] = "2024-05-01T12:00:00Z"
    path = write_log(tmp_path / "calls.jsonl", [json.dumps(line), json.dumps(dated)])
    imported_at = datetime(2026, 1, 1, tzinfo=UTC)
    times = [t.occurred_at for t in read_traces(path, "acme", imported_at).traces]
    assert times == [
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        datetime(2024, 5, 1, 12, tzinfo=UTC),
    ]


def test_sgd_records_keep_their_dialogue_as_session():
    if not SGD.exists():
        pytest.skip(f"workload {SGD} not found (set INTERNS_WORKLOADS_DIR)")
    batch = read_traces(SGD, "local")
    assert batch.format == "sgd" and batch.skipped_count == 0 and len(batch.traces) > 6000
    first = batch.traces[0]
    assert first.source == f"import:{SGD.name}:1"
    assert first.session_id and first.response.message.tool_calls


def test_a_trace_the_broker_refuses_is_listed_and_the_rest_published(tmp_path):
    path = write_log(
        tmp_path / "calls.jsonl", [json.dumps(openai_log_line(c, "s")) for c in CITIES]
    )
    batch = read_traces(path, "acme")
    too_large = MessageSizeTooLargeError("the message is 2000000 bytes")
    producer = RecordingProducer(refuse=lambda value: too_large if b"Oslo" in value else None)
    outcome = asyncio.run(publish_traces(batch.traces, producer))
    assert outcome.published == 3
    assert [batch.lines[trace_id] for trace_id, _ in outcome.failed] == [3]


def test_a_missing_file_fails_with_its_name(tmp_path):
    with pytest.raises(ImportFailed, match="nope.jsonl: no such file"):
        read_traces(tmp_path / "nope.jsonl", "acme")


# ---------------------------------------------------------------- the command


@pytest.fixture
def recorded(monkeypatch):
    """`interns import` publishing to a recording producer instead of a broker."""
    producer = RecordingProducer()

    @asynccontextmanager
    async def fake_producer(servers, timeout_s=30.0):
        yield producer

    monkeypatch.setattr(importer, "kafka_producer", fake_producer)
    return producer


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_the_command_names_the_bad_lines_and_counts_what_loaded(log_with_a_bad_line, recorded):
    result = run("import", str(log_with_a_bad_line), "--tenant", "acme")
    assert result.exit_code == 0, result.output
    assert "calls.jsonl:3: skipped" in result.output
    assert "calls.jsonl:4: skipped: not a valid trace" in result.output
    assert "4 loaded into interns.traces.v1 as tenant 'acme', 2 skipped (first lines: 3, 4)" in (
        result.output
    )
    assert len(recorded.sent) == 4


def test_the_command_fails_when_nothing_can_be_loaded(tmp_path, recorded):
    missing = run("import", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "nope.jsonl: no such file" in missing.output
    garbage = write_log(tmp_path / "garbage.jsonl", ["not json", '{"request": 1}'])
    unreadable = run("import", str(garbage))
    assert unreadable.exit_code == 1 and "no line is a record of a known" in unreadable.output
    assert not recorded.sent


def test_the_command_names_an_unreachable_broker(tmp_path, monkeypatch):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)
    path = write_log(tmp_path / "calls.jsonl", [json.dumps(openai_log_line("Paris", "s"))])
    result = run("import", str(path))
    assert result.exit_code == 1
    assert f"the Kafka broker at {address} is unreachable" in result.output
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.output
