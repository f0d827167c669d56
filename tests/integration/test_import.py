"""`interns import` on the real local stack: a log file goes through the real broker, the
real trace-collector stores each good line once with its provenance, and the curation
commands act on what it stored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import select

from interns.common.db import Trace, make_engine
from tests.conftest import openai_log_line

pytestmark = pytest.mark.integration

CITIES = ["Lisbon", "Cairo", "Hanoi", "Denver"]


def interns(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "COLUMNS": "200",
        "INTERNS_STATE_DIR": str(settings.state_dir),
        "KAFKA_BOOTSTRAP_SERVERS": f"{settings.host}:{settings.kafka_port}",
        "DATABASE_URL": settings.resolved_database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "interns.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def imported(settings, file_name: str) -> dict[str, Trace]:
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Trace).where(Trace.source.like(f"import:{file_name}:%"))
            ).all()
        return {row.source: row for row in rows}
    finally:
        engine.dispose()


def wait_for(settings, file_name: str, count: int, timeout: float = 30.0) -> dict[str, Trace]:
    deadline = time.monotonic() + timeout
    found = imported(settings, file_name)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        found = imported(settings, file_name)
    return found


def traces_consumed(settings) -> float:
    """How many trace events the collector has consumed and stored or skipped as known."""
    metrics = httpx.get(f"http://{settings.host}:{settings.collector_ops_port}/metrics").text
    pattern = r'interns_events_consumed_total\{[^}]*outcome="stored"[^}]*\} (\S+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def write_log(path, cities: list[str], bad_line: int | None = None):
    lines = [json.dumps(openai_log_line(city, f"trip-{city}")) for city in cities]
    if bad_line is not None:
        lines.insert(bad_line - 1, '{"request": {"messages": [')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_imported_log_is_stored_once_with_its_provenance(stack, tmp_path):
    settings, _ = stack
    log = write_log(tmp_path / "travel.jsonl", CITIES, bad_line=3)

    result = interns(settings, "import", str(log), "--tenant", "travel-co")
    assert result.returncode == 0, result.stderr
    assert "travel.jsonl:3: skipped" in result.stderr
    assert "4 loaded into interns.traces.v1 as tenant 'travel-co', 1 skipped" in result.stdout

    stored = wait_for(settings, "travel.jsonl", 4)
    assert sorted(stored) == [f"import:travel.jsonl:{line}" for line in (1, 2, 4, 5)]
    lisbon = stored["import:travel.jsonl:1"]
    assert (lisbon.tenant_id, lisbon.session_id, lisbon.status) == (
        "travel-co",
        "trip-Lisbon",
        "ok",
    )
    assert "Lisbon" in lisbon.request["messages"][1]["content"]
    assert lisbon.response["message"]["tool_calls"][0]["function"]["name"] == "GetWeather"

    before = traces_consumed(settings)
    again = interns(settings, "import", str(log), "--tenant", "travel-co")
    assert again.returncode == 0, again.stderr
    deadline = time.monotonic() + 30
    while traces_consumed(settings) < before + 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert traces_consumed(settings) >= before + 4, "the collector never read the re-import"
    after = imported(settings, "travel.jsonl")
    assert {s: t.trace_id for s, t in after.items()} == {s: t.trace_id for s, t in stored.items()}


def test_curation_commands_act_on_what_the_collector_stored(stack, tmp_path):
    settings, _ = stack
    # The log holds the same call twice (lines 1 and 3) and one other call.
    log = write_log(tmp_path / "repeats.jsonl", ["Tunis", "Accra", "Tunis"])
    assert interns(settings, "import", str(log), "--tenant", "repeats-co").returncode == 0
    assert len(wait_for(settings, "repeats.jsonl", 3)) == 3

    curated = interns(settings, "traces", "curate")
    assert curated.returncode == 0, curated.stderr
    stored = imported(settings, "repeats.jsonl")
    marks = {s: (t.curation_status, t.training_eligible) for s, t in stored.items()}
    assert sorted(marks.values()) == [
        ("duplicate", False),
        ("eligible", True),
        ("eligible", True),
    ]
    assert marks["import:repeats.jsonl:2"] == ("eligible", True)

    deleted = interns(settings, "traces", "delete", "--tenant", "repeats-co", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "3 traces deleted" in deleted.stdout
    assert imported(settings, "repeats.jsonl") == {}
