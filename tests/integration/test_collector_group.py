"""Two trace-collector processes in one consumer group share the trace topic's partitions,
and a collector killed mid-stream loses nothing and duplicates nothing when it restarts.

A real Tansu broker on a free port with `interns.traces.v1` in 4 partitions, traces
pre-published, and `python -m interns.trace_collector` processes writing into one SQLite
file.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from interns.bench.collector import publish, start_broker, stored_total
from interns.bench.processes import Started, free_port, start, wait_http
from interns.common.db import make_engine, upgrade_database
from interns.common.events import MessageRecord, TraceRecorded, TraceRequest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOTAL = 6_000


def trace(number: int) -> TraceRecorded:
    return TraceRecorded(
        trace_id=f"group-{number:05d}",
        tenant_id="acme",
        session_id=f"session-{number % 97}",
        request=TraceRequest(
            messages=[
                MessageRecord(role="system", content="You are a travel agent."),
                MessageRecord(
                    role="user", content=f"Book table {number}, call 415-555-0{number % 1000:03d}"
                ),
            ]
        ),
    )


@pytest.fixture
def broker(tmp_path):
    process, address = start_broker(tmp_path)
    events = [(event.key(), event.to_bytes()) for event in map(trace, range(TOTAL))]
    asyncio.run(publish(address, events))
    yield address
    process.stop()


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


class Collectors:
    """Collector processes of one consumer group, each with its own ops port."""

    def __init__(self, broker: str, database_url: str, logs: Path, batch_size: int):
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker,
            "DATABASE_URL": database_url,
            "COLLECTOR_GROUP_ID": "test-collector-group",
            "COLLECTOR_BATCH_SIZE": str(batch_size),
            "LOG_LEVEL": "WARNING",
        }
        self.logs = logs
        self.running: list[tuple[Started, int]] = []

    def start(self, name: str) -> tuple[Started, int]:
        port = free_port()
        command = [sys.executable, "-m", "interns.trace_collector"]
        env = {**self.env, "COLLECTOR_OPS_PORT": str(port)}
        collector = start(name, command, self.logs, env)
        self.running.append((collector, port))
        return collector, port

    def wait_healthy(self) -> None:
        for collector, port in self.running:
            wait_http(collector, f"http://127.0.0.1:{port}/healthz", 30)

    def stop(self) -> None:
        for collector, _ in self.running:
            collector.stop()


@pytest.fixture
def collectors(broker, database, tmp_path):
    def make(batch_size: int) -> Collectors:
        made = Collectors(broker, database[0], tmp_path / "logs", batch_size)
        created.append(made)
        return made

    created: list[Collectors] = []
    yield make
    for made in created:
        made.stop()


def rows(engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*), count(DISTINCT trace_id) FROM traces")
        ).one()


def wait_for_rows(engine, at_least: int, within_s: float) -> tuple[int, int]:
    deadline = time.monotonic() + within_s
    while (found := rows(engine))[0] < at_least:
        assert time.monotonic() < deadline, f"{found[0]} of {at_least} rows in {within_s} s"
        time.sleep(0.05)
    return found


def test_two_collectors_share_the_partitions_and_store_every_trace_once(collectors, database):
    _, engine = database
    group = collectors(batch_size=200)
    # Both start at once: the group's first assignment splits the topic between them.
    (_, first_port), (_, second_port) = group.start("first"), group.start("second")
    group.wait_healthy()
    assert wait_for_rows(engine, TOTAL, 90) == (TOTAL, TOTAL)
    time.sleep(0.5)  # the last batch's counter follows its commit
    shares = [
        stored_total(f"http://127.0.0.1:{port}/metrics") for port in (first_port, second_port)
    ]
    print(f"\nstored per instance: {shares}")
    assert sum(shares) == TOTAL
    # Each holds partitions of its own: at least one of the four, about a quarter of the traces.
    assert min(shares) >= TOTAL * 0.15, shares


def test_a_killed_collector_restarts_and_loses_or_duplicates_nothing(collectors, database):
    _, engine = database
    group = collectors(batch_size=100)
    collector, _ = group.start("victim")
    wait_for_rows(engine, TOTAL // 4, 60)
    collector.process.send_signal(signal.SIGKILL)
    collector.process.wait(10)
    killed_at, _ = rows(engine)
    assert killed_at < TOTAL, "the collector was killed after it had stored everything"
    group.start("restarted")
    assert wait_for_rows(engine, TOTAL, 90) == (TOTAL, TOTAL)
    time.sleep(1.0)  # a redelivered batch would land now, as a duplicate
    with engine.connect() as connection:
        ids = set(connection.execute(text("SELECT trace_id FROM traces")).scalars())
    assert rows(engine) == (TOTAL, TOTAL)
    assert ids == {trace(number).trace_id for number in range(TOTAL)}
