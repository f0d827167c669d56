"""Benchmark of the gateway: the latency that gateway plus router add over calling the
upstream directly, and the highest rate they hold, side by side with the LiteLLM proxy in
front of the same upstream, in one run.

Starts: the replay expert as the upstream (no added latency), the real local stack
(`interns.stack.supervisor.up`) in a temporary folder on free ports with that upstream as
its expert, a second gateway with trace publishing off, and the LiteLLM proxy (its own
virtual environment, `bench-results/.venv-litellm`, made on first use). Both gateways reach
the router as `--router` says (GATEWAY_ROUTER): embedded in their own process, the local
stack's default, or the router service over gRPC; the result names the mode measured.
Measures: each path closed-loop at concurrencies 1, 8, 16 and 32, in rounds that interleave
the paths (the machine is shared: medians over rounds, paths compared within the same
minute); then more concurrencies for the highest rate held. Publishing's share of the
added latency at the goals' concurrency is taken round by round, from the three paths
(with publishing, without, direct) of the same round, and its median is the headline.
Writes: `bench-results/gateway.json` (`--out`), and prints the tables.

    python -m interns.bench.gateway --out bench-results/gateway.json [--quick] [--router remote]
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import psutil
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from interns.api.v1 import gateway_pb2_grpc
from interns.bench import figures, profiling
from interns.bench.grpc_load import read_requests
from interns.bench.load import (
    CpuMeter,
    Measured,
    run_grpc,
    run_http,
    wait_quiet,
    write_bodies,
    wrk_script,
)
from interns.bench.processes import (
    MODEL,
    BenchError,
    ensure_litellm_venv,
    free_port,
    free_ports,
    gateway_variant,
    stack,
    stack_settings,
    start,
    start_litellm,
    start_upstream,
    write_workload,
)
from interns.common.events import TraceRecorded
from interns.expert.replay import load_workload
from interns.gateway.settings import GatewaySettings
from interns.stack.supervisor import Running, stop_all

CHAT_PATH = "/v1/chat/completions"
GOAL_CONCURRENCY = 8
# Cores used by processes outside the benchmark above which a run is flagged as busy.
BUSY_CORES = 0.5
DEFAULT_WORKLOAD = Path("../shared/workloads/sgd/sgd_service_calls_dev.jsonl")
# The gateway's per-tenant limit (500/s by default) would refuse the load: it stays on,
# with a limit above anything measured here.
NO_RATE_LIMIT = {"GATEWAY_RATE_LIMIT_RPS": "1000000", "GATEWAY_RATE_LIMIT_BURST": "1000000"}
# The stack's learning parts stay idle: the benchmark's calls are recorded SGD traffic,
# which the miner would mine and the trainer's worker train an intern on, meanwhile taking
# up to a core of the two the serving path is measured on (in production they run on
# other machines). The trace-collector and Kafka run as usual: they are publishing's cost.
LEARNING_IDLE = {"MINER_INTERVAL_S": "86400", "TRAINER_POLICY__OUTPUT_KINDS": "[]"}

# A wide table whether or not the output is a terminal (make pipes it).
console = Console(width=None if sys.stdout.isatty() else 132)
app = typer.Typer(add_completion=False)


@dataclass(frozen=True)
class Plan:
    """How long and at which concurrencies every path is measured. The concurrencies are
    also the steps of the search for the highest rate held (closed loop: wrk has no rate
    control, and on two cores the curve flattens well before 32). The goals' concurrency
    gets more rounds: its medians carry the verdicts."""

    concurrencies: tuple[int, ...]
    rounds: int
    goal_rounds: int
    duration_s: float
    warmup_s: float
    ceiling_s: float

    def rounds_at(self, concurrency: int) -> int:
        return self.goal_rounds if concurrency == GOAL_CONCURRENCY else self.rounds


# Nine rounds at the goals' concurrency: the publishing share is a ratio of two small
# differences there, and its round-to-round spread (0.1 to 0.5 in runs of 2026-11-27) needs
# that many for a median that moves less than the goal's margin.
FULL = Plan((1, 8, 16, 32), rounds=3, goal_rounds=9, duration_s=3.0, warmup_s=1.0, ceiling_s=3.0)
QUICK = Plan((1, 8, 32), rounds=1, goal_rounds=1, duration_s=1.0, warmup_s=1.0, ceiling_s=1.0)


@dataclass
class Target:
    """One path under load: how to reach it and which processes serve it."""

    name: str
    kind: str  # "http" (wrk) or "grpc" (the asyncio client)
    address: str  # base URL or host:port
    api_key: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    script: Path | None = None

    def measure(
        self, bodies: Path, concurrency: int, duration_s: float, warmup_s: float
    ) -> Measured:
        meter = CpuMeter(self.pids)
        if self.kind == "http":
            return run_http(
                self.address + CHAT_PATH, self.script, concurrency, duration_s, warmup_s, meter
            )
        return run_grpc(
            self.address, bodies, self.api_key, concurrency, duration_s, warmup_s, meter
        )


def report(message: str) -> None:
    console.print(f"[dim]{message}[/]")


def check_http(target: Target, body: dict) -> None:
    """One call through `target`, which must answer 200 with a completion."""
    headers = {"authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    response = httpx.post(target.address + CHAT_PATH, json=body, headers=headers, timeout=30)
    if response.status_code != 200 or "choices" not in response.json():
        raise BenchError(f"{target.name}: HTTP {response.status_code}: {response.text[:300]}")


def check_grpc(target: Target, bodies: Path) -> None:
    """One call through `target`'s GatewayService, which must succeed."""
    metadata = (("authorization", f"Bearer {target.api_key}"),) if target.api_key else ()
    with grpc.insecure_channel(target.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            stub.CreateChatCompletion(read_requests(bodies)[0], metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            raise BenchError(f"{target.name}: {error.code().name}: {error.details()}") from None


def grpc_client_ceiling(bodies: Path, folder: Path, plan: Plan) -> dict:
    """The gRPC load generator against a GatewayService that answers at once: the most
    it can send on this machine, so that its share of each gRPC figure is known."""
    port = free_port()
    server = start(
        "trivial-grpc",
        [
            sys.executable,
            "-m",
            "interns.bench.grpc_load",
            "trivial-server",
            "--port",
            str(port),
            "--seconds",
            "120",
        ],
        folder / "logs",
        {},
    )
    try:
        target = Target("trivial", "grpc", f"127.0.0.1:{port}", pids={"server": server.process.pid})
        deadline = time.monotonic() + 30
        while True:
            try:
                check_grpc(target, bodies)
                break
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        points = {}
        for concurrency in (1, 8, 32):
            measured = target.measure(bodies, concurrency, plan.ceiling_s, 0.5)
            points[concurrency] = {
                "rps": round(measured.rps, 1),
                "p50_ms": measured.p50_ms,
                "p99_ms": measured.p99_ms,
                "client_cpu_ms_per_call": round(
                    measured.loadgen_cpu_s * 1000 / max(measured.requests, 1), 3
                ),
            }
        return points
    finally:
        server.stop()


def sweep(
    targets: list[Target], bodies: Path, plan: Plan, everything: CpuMeter
) -> dict[str, dict[int, list[Measured]]]:
    """Every target at every concurrency: a warm-up per target, then rounds that each
    measure every target in turn (`round_order`), so that a disturbance hits all paths
    alike. Each run starts once `everything` the benchmark started is quiet again."""
    results: dict[str, dict[int, list[Measured]]] = {t.name: {} for t in targets}
    for concurrency in plan.concurrencies:
        for target in targets:
            wait_quiet(everything)
            target.measure(bodies, concurrency, plan.warmup_s, 0)
        rounds = plan.rounds_at(concurrency)
        for number in range(rounds):
            for target in round_order(targets, number):
                waited = wait_quiet(everything)
                measured = target.measure(bodies, concurrency, plan.duration_s, 0)
                measured.quiet_wait_s = waited
                results[target.name].setdefault(concurrency, []).append(measured)
                report(
                    f"c={concurrency:<3} round {number + 1}/{rounds} {target.name:<22}"
                    f" {measured.rps:7.0f}/s p50 {measured.p50_ms:7.2f} ms"
                    f" p99 {measured.p99_ms:7.2f} ms errors {measured.errors}"
                )
    return results


def round_order(targets: list[Target], number: int) -> list[Target]:
    """The order of round `number`: as given, every other round reversed, so that no path
    always follows the same one. Fixed, the path with publishing always ran right after
    LiteLLM's, which saturates both cores for the whole run, and the one without after
    it; reversed, each comparison has both orders."""
    return list(targets) if number % 2 == 0 else list(reversed(targets))


def pid_of(running: list[Running], name: str) -> int:
    return next(item.pid for item in running if item.name == name)


def summarize(
    results: dict[str, dict[int, list[Measured]]], primary: str, p99_bound_ms: float
) -> dict:
    """The figures of the run: medians per point, added latency, highest rates, ratios."""
    points = {
        path: {c: figures.median_point(rounds) for c, rounds in sorted(by_c.items())}
        for path, by_c in results.items()
    }
    figures.add_overheads(points)
    rates = {path: figures.max_rate(by_c, p99_bound_ms) for path, by_c in points.items()}
    c = GOAL_CONCURRENCY
    primary_at_c = points[primary].get(c, {})
    litellm_at_c = points[figures.LITELLM].get(c, {})
    on, off = primary, primary + "-nopub"
    publishing = figures.publishing_overhead(
        points[on],
        points[off],
        rates[on]["max_rps"],
        rates[off]["max_rps"],
        rates[figures.DIRECT]["max_rps"],
        c,
        figures.paired_shares(
            results[on].get(c, []), results[off].get(c, []), results[figures.DIRECT].get(c, [])
        ),
    )
    gateway_cpu = {path: points[path].get(c, {}).get("cpu_ms_per_call", {}) for path in (on, off)}
    on_cpu, off_cpu = gateway_cpu[on], gateway_cpu[off]
    gateway_on = on_cpu.get("gateway", 0.0)
    gateway_off = off_cpu.get("gateway-nopub", 0.0)
    overhead_cpu = gateway_on + on_cpu.get("router", 0.0)
    publishing["gateway_cpu_ms_per_call_on"] = gateway_on
    publishing["gateway_cpu_ms_per_call_off"] = gateway_off
    publishing["cpu_share"] = (
        round((gateway_on - gateway_off) / overhead_cpu, 3) if overhead_cpu else None
    )
    # Everything the path costs this machine beyond the upstream called directly: with
    # publishing on, the trace-collector and Kafka share the two cores too.
    direct_cpu = points[figures.DIRECT].get(c, {}).get("cpu_ms_per_call", {}).get("upstream", 0)
    machine_on = sum(on_cpu.values()) - direct_cpu
    machine_off = sum(off_cpu.values()) - direct_cpu
    publishing["machine_cpu_ms_per_call_on"] = round(machine_on, 3)
    publishing["machine_cpu_ms_per_call_off"] = round(machine_off, 3)
    publishing["machine_cpu_share"] = (
        round((machine_on - machine_off) / machine_on, 3) if machine_on > 0 else None
    )
    # Whose CPU publishing takes, ms a call: the gateway's own, the broker's and the
    # collector's (which have nothing to do while the gateway publishes nothing).
    publishing["extra_cpu_ms_per_call"] = {
        "gateway": round(gateway_on - gateway_off, 3),
        **{
            name: round(on_cpu.get(name, 0.0) - off_cpu.get(name, 0.0), 3)
            for name in ("collector", "kafka")
        },
    }
    return {
        "primary_path": primary,
        "goal_concurrency": c,
        "p99_bound_ms": p99_bound_ms,
        "added_p50_ms": primary_at_c.get("added_p50_ms"),
        "added_p99_ms": primary_at_c.get("added_p99_ms"),
        "max_rps": rates[primary]["max_rps"],
        "litellm_max_rps": rates[figures.LITELLM]["max_rps"],
        "litellm_added_p50_ms": litellm_at_c.get("added_p50_ms"),
        "litellm_added_p99_ms": litellm_at_c.get("added_p99_ms"),
        "throughput_ratio_vs_litellm": figures.ratio(
            rates[primary]["max_rps"], rates[figures.LITELLM]["max_rps"]
        ),
        "added_p99_ratio_vs_litellm": figures.ratio(
            primary_at_c.get("added_p99_ms"), litellm_at_c.get("added_p99_ms")
        ),
        "publishing_overhead_ratio": publishing["headline"],
        "publishing_overhead": publishing,
        "max_rate": rates,
        "paths": points,
    }


@dataclass(frozen=True)
class Options:
    """What a run measures, and how."""

    plan: Plan
    workload: Path
    records: int
    upstream_workers: int
    litellm: Path
    litellm_workers: int
    p99_bound_ms: float
    profile_s: float
    profile_concurrency: int
    profiles: Path
    router: str


@app.command()
def main(
    out: Path = typer.Option(Path("bench-results/gateway.json"), help="Where the JSON goes"),
    quick: bool = typer.Option(False, help="About a second per point: a smoke run for CI"),
    workload: Path = typer.Option(
        Path(os.environ.get("INTERNS_WORKLOADS_DIR", DEFAULT_WORKLOAD.parent.parent))
        / "sgd"
        / "sgd_service_calls_dev.jsonl",
        help="SGD workload file; its first --records conversations are replayed",
    ),
    records: int = typer.Option(32, min=1, max=1000, help="Distinct conversations sent"),
    upstream_workers: int = typer.Option(1, min=1, max=8, help="uvicorn workers of the upstream"),
    p99_bound_ms: float = typer.Option(250.0, help="p99 bound of the highest rate held"),
    litellm_venv: Path = typer.Option(
        Path("bench-results/.venv-litellm"), help="LiteLLM's own virtual environment"
    ),
    litellm_workers: int = typer.Option(
        1, min=1, max=8, help="LiteLLM's --num_workers (1: its default, the stock proxy)"
    ),
    profile_s: float = typer.Option(
        0.0, min=0, max=60, help="Then profile gateway and router with py-spy this long (0: no)"
    ),
    profile_concurrency: int = typer.Option(32, min=1, max=256, help="Load while profiling"),
    router: str = typer.Option(
        "embedded",
        help="How the gateways reach the router (GATEWAY_ROUTER): embedded, in their own "
        "process (the local stack's default), or remote, the router service over gRPC",
    ),
    keep: bool = typer.Option(False, help="Keep the temporary state folder (logs)"),
) -> None:
    """Runs the benchmark, writes the JSON and prints the tables."""
    started_at = time.monotonic()
    options = Options(
        plan=QUICK if quick else FULL,
        workload=workload.resolve(),
        records=records,
        upstream_workers=upstream_workers,
        litellm=ensure_litellm_venv(litellm_venv.resolve(), report),
        litellm_workers=litellm_workers,
        p99_bound_ms=p99_bound_ms,
        profile_s=profile_s,
        profile_concurrency=profile_concurrency,
        profiles=out.parent / "profiles",
        router=router,
    )
    if router not in ("embedded", "remote"):
        raise typer.BadParameter(f"--router: embedded or remote, not {router!r}")
    folder = Path(tempfile.mkdtemp(prefix="interns-bench-"))
    try:
        result = run(options, folder)
    finally:
        if keep:
            console.print(f"state folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["duration_s"] = round(time.monotonic() - started_at, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    figures.print_tables(result, console)
    console.print(f"written: {out} ({result['duration_s']:.0f} s)")


@dataclass
class Paths:
    """Every path under load, and the processes that serve them."""

    targets: list[Target]
    pids: dict[str, int]
    primary: str
    notes: list[str]
    gateway_metrics: dict[str, str]


def start_paths(
    options: Options, folder: Path, bodies: list[dict], cleanup: contextlib.ExitStack
) -> Paths:
    """Starts the upstream, the stack, the gateway without publishing and the LiteLLM
    proxy (each stopped by `cleanup`), and checks that every path answers."""
    notes = []
    upstream_port = free_port()
    small = folder / "workload" / options.workload.name
    upstream = start_upstream(small, upstream_port, options.upstream_workers, folder / "logs")
    cleanup.callback(upstream.stop)
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    report(f"upstream: replay expert, {options.upstream_workers} worker(s), {upstream_url}")

    settings = stack_settings(folder / "stack", upstream_url + "/v1")
    publishing = {
        "GATEWAY_SPILL_DIR": str(folder / "spill-on"),
        "GATEWAY_TRACE_PUBLISHING": "true",
        "GATEWAY_ROUTER": options.router,
    }
    running = cleanup.enter_context(
        stack(settings, {**NO_RATE_LIMIT, **LEARNING_IDLE, **publishing}, report)
    )
    notes.append(
        "miner and trainer idle during the run (MINER_INTERVAL_S=86400, "
        "TRAINER_POLICY__OUTPUT_KINDS=[]): not on the serving path; left on, the trainer's "
        "worker trains an intern on the benchmark's calls, on the cores being measured"
    )
    key_file = settings.api_key_file
    api_key = key_file.read_text().strip() if key_file.exists() else ""
    if not api_key:
        notes.append("no API key file after `up`: calls were sent without a key")
    http = "http_port" in GatewaySettings.model_fields and hasattr(settings, "gateway_http_port")
    if not http:
        notes.append(
            "the gateway has no OpenAI-compatible HTTP port yet: Interns was measured over "
            "gRPC (asyncio client) while LiteLLM and direct go through wrk over HTTP; the "
            "gRPC client's own cost is in grpc_client_ceiling"
        )
    if "trace_publishing" not in GatewaySettings.model_fields:
        notes.append(
            "GatewaySettings has no trace_publishing field yet: the 'nopub' gateway ran with "
            "GATEWAY_TRACE_PUBLISHING=false ignored, i.e. publishing ON; its difference to "
            "'on' is noise, not the cost of publishing"
        )

    names = ["GATEWAY_PORT", "GATEWAY_OPS_PORT"] + (["GATEWAY_HTTP_PORT"] if http else [])
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    no_publishing = {
        "GATEWAY_SPILL_DIR": str(folder / "spill-off"),
        "GATEWAY_TRACE_PUBLISHING": "false",
        "GATEWAY_ROUTER": options.router,
    }
    variant = gateway_variant(settings, "gateway-nopub", {**NO_RATE_LIMIT, **no_publishing}, ports)
    cleanup.callback(stop_all, [variant])

    master_key = "sk-" + secrets.token_hex(24)
    litellm_port = free_port()
    proxy = start_litellm(
        options.litellm,
        upstream_url + "/v1",
        litellm_port,
        folder / "litellm",
        master_key,
        options.litellm_workers,
    )
    cleanup.callback(proxy.stop)
    report(f"LiteLLM proxy: http://127.0.0.1:{litellm_port}")

    pids = {
        "upstream": upstream.process.pid,
        "litellm": proxy.process.pid,
        "gateway": pid_of(running, "gateway"),
        "gateway-nopub": variant.pid,
        "router": pid_of(running, "router"),
        "collector": pid_of(running, "trace-collector"),
        "kafka": pid_of(running, "kafka"),
    }
    behind = {name: pids[name] for name in ("router", "upstream", "collector", "kafka")}
    on = {"gateway": pids["gateway"], **behind}
    off = {"gateway-nopub": pids["gateway-nopub"], **behind}
    host = "127.0.0.1"
    targets = [
        Target("direct", "http", upstream_url, "", {"upstream": pids["upstream"]}),
        Target(
            "litellm",
            "http",
            f"http://{host}:{litellm_port}",
            master_key,
            {"litellm": pids["litellm"], "upstream": pids["upstream"]},
        ),
    ]
    if http:
        gateway_http = f"http://{host}:{settings.gateway_http_port}"
        nopub_http = f"http://{host}:{ports['GATEWAY_HTTP_PORT']}"
        targets += [
            Target("interns-http", "http", gateway_http, api_key, on),
            Target("interns-http-nopub", "http", nopub_http, api_key, off),
            Target("interns-grpc", "grpc", f"{host}:{settings.gateway_port}", api_key, on),
        ]
    else:
        targets += [
            Target("interns-grpc", "grpc", f"{host}:{settings.gateway_port}", api_key, on),
            Target("interns-grpc-nopub", "grpc", f"{host}:{ports['GATEWAY_PORT']}", api_key, off),
        ]
    bodies_file = folder / "bodies.jsonl"
    for target in targets:
        if target.kind == "http":
            target.script = wrk_script(bodies_file, CHAT_PATH, target.api_key, folder)
            check_http(target, bodies[0])
        else:
            check_grpc(target, bodies_file)
    report("every path answers")
    primary = "interns-http" if http else "interns-grpc"
    metrics = {
        "gateway": f"http://{host}:{settings.gateway_ops_port}/metrics",
        "gateway-nopub": f"http://{host}:{ports['GATEWAY_OPS_PORT']}/metrics",
    }
    return Paths(targets, pids, primary, notes, metrics)


def traces_published(metrics_url: str) -> float:
    """How many trace events a gateway has published, from its Prometheus metrics."""
    text = httpx.get(metrics_url, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "interns_events_published_total"
        and sample.labels.get("topic") == TraceRecorded.topic
    )


def run(options: Options, folder: Path) -> dict:
    """Starts everything, measures every path, stops everything; returns the result."""
    plan = options.plan
    small = write_workload(options.workload, folder / "workload", options.records)
    bodies = [{**record.request, "model": MODEL} for record in load_workload(small)]
    bodies_file = write_bodies(bodies, folder / "bodies.jsonl")
    load_before = os.getloadavg()
    with contextlib.ExitStack() as cleanup:
        paths = start_paths(options, folder, bodies, cleanup)
        ceiling = grpc_client_ceiling(bodies_file, folder, plan)
        report(f"gRPC client ceiling (trivial server): {ceiling}")
        everything = CpuMeter(paths.pids)
        results = sweep(paths.targets, bodies_file, plan, everything)
        published = {name: traces_published(url) for name, url in paths.gateway_metrics.items()}
        profiled = None
        if options.profile_s:
            primary = next(t for t in paths.targets if t.name == paths.primary)
            report(
                f"profiling gateway and router, {paths.primary} at c={options.profile_concurrency}"
            )
            profiled = profiling.record(
                {"gateway": paths.pids["gateway"], "router": paths.pids["router"]},
                options.profiles,
                options.profile_s,
                lambda: primary.measure(
                    bodies_file, options.profile_concurrency, options.profile_s - 1, 0
                ).as_dict(),
            )
    load_after = os.getloadavg()

    summary = summarize(results, paths.primary, options.p99_bound_ms)
    summary["traces_published"] = published
    # The setting is trusted only when the gateway without publishing really published
    # nothing; otherwise its difference to the other gateway is noise.
    summary["publishing_off_effective"] = published["gateway-nopub"] == 0
    if published["gateway-nopub"]:
        paths.notes.append(
            f"GATEWAY_TRACE_PUBLISHING=false did not stop publishing: the 'nopub' gateway "
            f"published {published['gateway-nopub']:.0f} traces; the publishing share is "
            "noise and its goal is not judged"
        )
    summary["router_mode"] = options.router
    paths.notes.append(
        "router embedded in each gateway's process (GATEWAY_ROUTER=embedded): the 'router' "
        "CPU is the idle router service's"
        if options.router == "embedded"
        else "router: the router service, called over gRPC (GATEWAY_ROUTER=remote)"
    )
    direct_rate = summary["max_rate"]["direct"]["max_rps"]
    paths.notes.append(
        f"upstream: replay expert, {options.upstream_workers} uvicorn worker(s); it held "
        f"{direct_rate:.0f}/s when called directly"
    )
    busy = statistics.median(
        point["other_cpu_cores"] for by_c in summary["paths"].values() for point in by_c.values()
    )
    if busy > BUSY_CORES:
        # A busy machine slowed LiteLLM more than Interns in the runs seen (its top rate
        # fell from 98 to 25 calls/s, Interns' from 930 to 334): the ratios flatter Interns.
        paths.notes.append(
            f"the machine was busy: other processes used {busy:.2f} of "
            f"{psutil.cpu_count()} cores (median over the runs); every path is slower and "
            "the ratios to LiteLLM are not those of a quiet machine"
        )
    summary["goals"] = [goal.__dict__ for goal in figures.goals(summary)]
    if not summary["publishing_off_effective"]:
        summary["goals"][-1]["passed"] = None
    summary.update(
        {
            "mode": "quick" if plan is QUICK else "full",
            "plan": plan.__dict__,
            "notes": paths.notes,
            "grpc_client_ceiling": ceiling,
            "profile": profiled,
            "machine": {
                "cpus": psutil.cpu_count(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in load_after],
                "python": platform.python_version(),
                "grpc": grpc.__version__,
                "litellm": _litellm_version(options.litellm),
                "litellm_workers": options.litellm_workers,
                "upstream_workers": options.upstream_workers,
            },
        }
    )
    return summary


def _litellm_version(litellm: Path) -> str:
    python = litellm.parent / "python"
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


if __name__ == "__main__":
    app()
