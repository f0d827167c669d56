"""Closed-loop load: `concurrency` clients each sending the next request as soon as the
last one is answered, for a fixed time after a warm-up. HTTP goes through `wrk` (C, one
thread: it never is the bottleneck of a Python server); gRPC through the asyncio client of
`interns.bench.grpc_load`, run as its own process. Both report the same `Measured`.

Why `wrk` and not a Python HTTP client: on two cores httpx tops out at a few hundred calls
a second, below the servers measured. Its Lua `done()` prints the figures as JSON.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

RESULT_MARK = "BENCH_JSON "
MACHINE = "_machine"

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(auth)s
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local prepared = {}
local sent = 0

function init(args)
  for i, body in ipairs(bodies) do
    prepared[i] = wrk.format("POST", "%(path)s", nil, body)
  end
end

function request()
  sent = sent + 1
  return prepared[(sent %% #prepared) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_s":%%.6f,"errors":%%d,"non_2xx":%%d,'
    .. '"p50_ms":%%.4f,"p90_ms":%%.4f,"p99_ms":%%.4f,"mean_ms":%%.4f,"max_ms":%%.4f}\\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3))
end
"""


@dataclass
class Measured:
    """One closed-loop run at one concurrency."""

    concurrency: int
    requests: int = 0
    duration_s: float = 0.0
    errors: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    max_ms: float = 0.0
    loadgen_cpu_s: float = 0.0
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    other_cpu_cores: float = 0.0
    quiet_wait_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rps": round(self.rps, 1)}


def write_bodies(bodies: list[dict], path: Path) -> Path:
    """The request bodies, one JSON document a line, as the load generators read them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(body, separators=(",", ":")) + "\n" for body in bodies))
    return path


def wrk_script(bodies: Path, path: str, api_key: str, folder: Path) -> Path:
    """A wrk Lua script that POSTs the bodies in turn to `path`, with the key if any."""
    auth = f'wrk.headers["Authorization"] = "Bearer {api_key}"' if api_key else ""
    script = folder / f"wrk-{abs(hash((str(bodies), path, api_key)))}.lua"
    script.write_text(
        WRK_SCRIPT % {"auth": auth, "bodies": bodies, "path": path, "mark": RESULT_MARK}
    )
    return script


class CpuMeter:
    """CPU seconds used between two readings by named server processes (with their
    children), and by the whole machine: where the time of a run went, and how much the
    rest of a shared machine took meanwhile."""

    def __init__(self, pids: dict[str, int]):
        self._processes = {}
        for name, pid in pids.items():
            try:
                process = psutil.Process(pid)
                self._processes[name] = [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue

    def read(self) -> dict[str, float]:
        totals = {}
        for name, processes in self._processes.items():
            total = 0.0
            for process in processes:
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    continue
            totals[name] = total
        machine = psutil.cpu_times()
        totals[MACHINE] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return totals


def wait_quiet(
    meter: CpuMeter, max_wait_s: float = 10.0, idle_cores: float = 0.15, window_s: float = 0.25
) -> float:
    """Waits until the metered processes together use less than `idle_cores` (for
    example the trace-collector catching up with the last run's traces), at most
    `max_wait_s`; returns how long it waited. Each run then starts from a quiet system and
    pays for its own work only."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        before = meter.read()
        time.sleep(window_s)
        after = meter.read()
        used = sum(after[name] - before[name] for name in after if name != MACHINE)
        if used / window_s < idle_cores:
            break
    return round(time.monotonic() - started, 2)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_loadgen(command: list[str], timeout_s: float) -> tuple[dict, float]:
    before = _children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    cpu_s = _children_cpu_s() - before
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :]), cpu_s
    raise RuntimeError(
        f"load generator printed no result (exit {done.returncode}): "
        f"{done.stdout[-800:]} {done.stderr[-800:]}"
    )


def _measured(concurrency: int, figures: dict, cpu_s: float, cpu: dict[str, float]) -> Measured:
    requests = figures["requests"]
    duration_s = figures["duration_s"]
    servers = {name: seconds for name, seconds in cpu.items() if name != MACHINE}
    # What the rest of the machine used meanwhile (other people's work on a shared box).
    other_s = cpu.get(MACHINE, 0.0) - sum(servers.values()) - cpu_s
    return Measured(
        concurrency=concurrency,
        requests=requests,
        duration_s=round(duration_s, 4),
        errors=figures["errors"] + figures.get("non_2xx", 0),
        p50_ms=round(figures["p50_ms"], 3),
        p90_ms=round(figures["p90_ms"], 3),
        p99_ms=round(figures["p99_ms"], 3),
        mean_ms=round(figures["mean_ms"], 3),
        max_ms=round(figures["max_ms"], 3),
        loadgen_cpu_s=round(cpu_s, 3),
        cpu_ms_per_call={
            name: round(seconds * 1000 / requests, 3) if requests else 0.0
            for name, seconds in servers.items()
        },
        other_cpu_cores=round(max(other_s, 0.0) / duration_s, 2) if duration_s else 0.0,
    )


def _cpu_delta(meter: CpuMeter | None, before: dict[str, float]) -> dict[str, float]:
    if meter is None:
        return {}
    after = meter.read()
    return {name: after[name] - before.get(name, after[name]) for name in after}


def run_http(
    url: str,
    script: Path,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    meter: CpuMeter | None = None,
) -> Measured:
    """`wrk` against `url` with `script`: a warm-up run (discarded), then the measured one.
    wrk takes whole seconds only."""
    base = ["wrk", "-t1", f"-c{concurrency}", "--timeout", "10s", "-s", str(script)]
    if warmup_s > 0:
        _run_loadgen([*base, f"-d{max(1, round(warmup_s))}s", url], warmup_s + 30)
    before = meter.read() if meter else {}
    figures, cpu_s = _run_loadgen([*base, f"-d{max(1, round(duration_s))}s", url], duration_s + 30)
    return _measured(concurrency, figures, cpu_s, _cpu_delta(meter, before))


def run_grpc(
    target: str,
    bodies: Path,
    api_key: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    meter: CpuMeter | None = None,
) -> Measured:
    """The asyncio gRPC client (its own process) against the GatewayService at `target`.
    The warm-up is part of the same process, so its CPU is counted in `loadgen_cpu_s`."""
    command = [
        sys.executable,
        "-m",
        "interns.bench.grpc_load",
        "run",
        "--target",
        target,
        "--bodies",
        str(bodies),
        "--concurrency",
        str(concurrency),
        "--duration-s",
        str(duration_s),
        "--warmup-s",
        str(warmup_s),
    ]
    if api_key:
        command += ["--api-key", api_key]
    # The warm-up runs in the same process as the measured calls, so the CPU readings
    # span both: they are scaled to the measured calls (a warm call costs as much).
    before = meter.read() if meter else {}
    figures, cpu_s = _run_loadgen(command, warmup_s + duration_s + 60)
    cpu = _cpu_delta(meter, before)
    all_calls = figures["requests"] + figures.get("warmup_requests", 0)
    share = figures["requests"] / all_calls if all_calls else 0.0
    return _measured(
        concurrency, figures, cpu_s * share, {name: s * share for name, s in cpu.items()}
    )
