"""The processes a benchmark runs: the upstream (the replay expert), the LiteLLM proxy in
its own virtual environment, the local stack and an extra gateway. Each is started in its
own process group, waited for until healthy and stopped by its own pid, never by name."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from interns.stack.components import Probe, build_components
from interns.stack.settings import StackSettings
from interns.stack.supervisor import Running, start_process, stop_all, up, wait_healthy

LITELLM_REQUIREMENT = "litellm[proxy]"
SYSTEM_PYTHON = "/usr/bin/python3.11"
MODEL = "replay-expert"


class BenchError(RuntimeError):
    """A part of the benchmark could not be set up; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports nothing listens on now: the probes stay bound until all
    are picked, so the kernel cannot hand one port out twice (as free_port in a row can)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]


def stack_ports() -> dict[str, int]:
    """A free port for each of the stack's port settings, no two alike."""
    names = [name for name in StackSettings.model_fields if name.endswith("_port")]
    return dict(zip(names, free_ports(len(names)), strict=True))


@dataclasses.dataclass
class Started:
    """A process this benchmark started, in its own process group."""

    name: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to its process group, SIGKILL after `timeout` seconds."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, command: list[str], logs: Path, env: dict[str, str]) -> Started:
    """Starts `command` with `env` added to this process's environment, logging to
    `logs/<name>.log`."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
    return Started(name, process, log_path)


def wait_http(started: Started, url: str, timeout_s: float, headers: dict | None = None) -> None:
    """Waits until GET `url` answers 200, or raises BenchError with the log's tail."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            raise BenchError(
                f"{started.name} exited during start; {started.log} ends with:\n"
                + started.log_tail()
            )
        try:
            response = httpx.get(url, timeout=2.0, headers=headers)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.3)
    raise BenchError(
        f"{started.name} not healthy at {url} within {timeout_s:.0f}s ({last}); "
        f"{started.log} ends with:\n{started.log_tail()}"
    )


# --- the upstream -------------------------------------------------------------------------


def write_workload(source: Path, folder: Path, records: int) -> Path:
    """A small SGD workload: the first `records` lines of `source`, with its tool file
    beside it, so that the expert starts in a moment and the requests stay few."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    with open(source) as lines, open(target, "w") as out:
        for _, line in zip(range(records), lines, strict=False):
            out.write(line)
    shutil.copy2(source.parent / "sgd_tools.json", folder / "sgd_tools.json")
    return target


def start_upstream(workload: Path, port: int, workers: int, logs: Path) -> Started:
    """The replay expert (no added latency) under uvicorn with `workers` processes sharing
    one socket: the upstream every path of the benchmark calls."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "interns.bench.upstream:replay_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {
        "EXPERT_WORKLOAD": str(workload),
        "EXPERT_LATENCY_MS": "0",
        "EXPERT_MODEL_NAME": MODEL,
        "LOG_LEVEL": "WARNING",
    }
    started = start("upstream", command, logs, env)
    wait_http(started, f"http://127.0.0.1:{port}/readyz", 60)
    return started


# --- LiteLLM ------------------------------------------------------------------------------


def ensure_litellm_venv(venv: Path, report) -> Path:
    """The `litellm` command of a virtual environment of its own (made from the system's
    Python 3.11 and `pip install litellm[proxy]` the first time), so that LiteLLM's pins
    never touch the project's environment."""
    litellm = venv / "bin" / "litellm"
    if litellm.exists():
        return litellm
    report(f"LiteLLM: creating {venv} and installing {LITELLM_REQUIREMENT} (once)")
    python = SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, LITELLM_REQUIREMENT], check=True)
    if not litellm.exists():
        raise BenchError(f"installing {LITELLM_REQUIREMENT} into {venv} made no litellm command")
    return litellm


def litellm_config(upstream_url: str) -> dict:
    """A stock proxy configuration: one model, the upstream as an OpenAI-compatible API."""
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream_url,
                    "api_key": "not-needed",
                },
            }
        ]
    }


def start_litellm(
    litellm: Path, upstream_url: str, port: int, folder: Path, master_key: str, workers: int = 1
) -> Started:
    """The LiteLLM proxy, started by its CLI with a stock configuration: no database, no
    callbacks, its default worker count. Its master key (`sk-...`, which the proxy
    insists on since 1.8x) authenticates calls as the API key does for the gateway."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "litellm-config.yaml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(json.dumps(litellm_config(upstream_url), indent=2))
    env = {
        # Offline machine: use the cost map shipped in the wheel rather than fetching it.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "PATH": f"{litellm.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--num_workers", str(workers)]
    started = start("litellm", command, folder / "logs", env)
    wait_http(
        started,
        f"http://127.0.0.1:{port}/health/readiness",
        180,
        headers={"authorization": f"Bearer {master_key}"},
    )
    return started


# --- the Interns stack --------------------------------------------------------------------


def stack_settings(state_dir: Path, expert_base_url: str) -> StackSettings:
    """The local stack on free ports in `state_dir`, its expert being `expert_base_url`."""
    ports = stack_ports()
    return StackSettings(
        state_dir=state_dir,
        database_url="",
        expert_base_url=expert_base_url,
        **ports,
    )


@contextlib.contextmanager
def stack(settings: StackSettings, env: dict[str, str], report) -> Iterator[list[Running]]:
    """The whole local stack (`interns.stack.supervisor.up`), with `env` in every
    process's environment; stopped at exit."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        running = up(settings, report)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield running
    finally:
        stop_all(running)


def gateway_variant(
    settings: StackSettings, name: str, env: dict[str, str], ports: dict[str, int]
) -> Running:
    """One more gateway process, beside the stack's, with the same settings except its
    ports (`ports`: GATEWAY_PORT, GATEWAY_OPS_PORT, ...) and `env`. Returns once healthy."""
    component = next(c for c in build_components(settings) if c.name == "gateway")
    own_env = {**component.env, **env, **{key: str(value) for key, value in ports.items()}}
    host = settings.host
    variant = dataclasses.replace(
        component,
        name=name,
        env=own_env,
        probe=Probe("grpc", f"{host}:{ports['GATEWAY_PORT']}"),
        address=f"{host}:{ports['GATEWAY_PORT']}",
    )
    running = start_process(variant, settings.state_dir / "logs")
    try:
        wait_healthy(running, time.monotonic() + 60)
    except BaseException:
        stop_all([running])
        raise
    return running


def fresh_settings(state_dir: Path, workload: Path, **overrides) -> StackSettings:
    """Stack settings on free ports, in `state_dir`, with the replay expert on `workload`
    and nothing taken from the operator's environment; `overrides` set the rest."""
    ports = stack_ports()
    return StackSettings(
        state_dir=state_dir,
        database_url="",
        expert_base_url="",
        trainer_addr="",
        kafka_bootstrap_servers="",
        api_key="",
        workload=str(workload),
        **ports,
        **overrides,
    )
