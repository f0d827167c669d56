"""`make bench-rollout`: a model version swapped in, and later rolled back by the deploy
controller, under steady load through the gateway; no call may fail.

The stack's parts that take part (Kafka, Triton, the replay expert, router, gateway,
deploy controller) run as real processes on free ports. The interns are cheap python-
backend models without torch (`planted_model`): one reads the city from the question and
answers as the expert does; one does that for a while and then answers a wrong city (it
passed its "offline evaluation", then disagrees on live traffic). So the measured thing
is the swap, not inference.

Figures: `swap_seconds`, from the version's registration (the controller's load call
follows at once) to the first call the gateway answers from it; `rollback_seconds`, from
the controller's rollback decision (its route event) to the first call answered by the
previous version again; `failed_requests` over the whole run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlmodel import Session

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.bench.processes import fresh_settings
from interns.common.chat import input_from_openai
from interns.common.db import ModelVersion, Task, make_engine
from interns.common.events import Event, ModelRegistered, RolloutChanged
from interns.common.intern_contract import config_pbtxt
from interns.common.signature import request_signature
from interns.stack.components import build_components, prepare_triton_backends
from interns.stack.settings import StackSettings
from interns.stack.supervisor import (
    Running,
    create_topics,
    ensure_local_api_key,
    migrate_database,
    start_process,
    stop_all,
    wait_healthy,
)

# A python-backend intern that answers GetWeather for the city in the question, as the
# replay expert's recorded answers do; after `GOOD_CALLS` calls (per process) it answers
# Atlantis instead. Arguments other than the city are read from the replay workload.
PLANTED = """
import json
import re

import numpy as np
import triton_python_backend_utils as pb_utils

GOOD_CALLS = {good_calls}
DATE = "{date}"


class TritonPythonModel:
    def initialize(self, args):
        self.calls = 0

    def answer(self, body):
        self.calls += 1
        question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        found = re.search(r"in ([A-Z][\\w ]*?) (?:tomorrow|today|on)", question)
        city = found.group(1) if found else "Lima"
        if GOOD_CALLS >= 0 and self.calls > GOOD_CALLS:
            city = "Atlantis"
        arguments = json.dumps({{"city": city, "date": DATE}})
        return {{"tool_calls": [{{"id": "call_i", "type": "function",
                 "function": {{"name": "GetWeather", "arguments": arguments}}}}]}}

    def execute(self, requests):
        responses = []
        for request in requests:
            bodies = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy()
            out = [[json.dumps(self.answer(json.loads(b[0]))).encode()] for b in bodies]
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("RESPONSE", np.array(out, dtype=object))]))
        return responses
"""


def planted_model(good_calls: int = -1, date: str = "2019-03-02") -> str:
    """The model.py of a planted intern: right for `good_calls` calls, then wrong (-1:
    always right; 0: always wrong)."""
    return textwrap.dedent(PLANTED.format(good_calls=good_calls, date=date))


def write_version(repository: Path, model: str, version: int, source: str) -> None:
    folder = repository / model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(source)
    (repository / model / "config.pbtxt").write_text(config_pbtxt(model))


def register(
    database_url: str, task_id: str, signature: str, model: str, version: int, score: float
) -> ModelRegistered:
    """The rows the trainer writes for a version that passed its offline evaluation, and
    the event it publishes."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            if session.get(Task, task_id) is None:
                session.add(Task(task_id=task_id, signature=signature, output_kind="tool_call"))
            session.merge(
                ModelVersion(
                    model=model,
                    version=version,
                    task_id=task_id,
                    base_model="planted",
                    scores={"exact_match": score},
                )
            )
            session.commit()
    finally:
        engine.dispose()
    return ModelRegistered(
        task_id=task_id,
        model=model,
        version=version,
        base_model="planted",
        passed=True,
        scores={"exact_match": score},
    )


async def publish(bootstrap: str, event: Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(event.topic, event.to_bytes(), key=event.key())
    finally:
        await producer.stop()


@contextmanager
def running_parts(
    settings: StackSettings, names: list[str], env: dict[str, dict[str, str]]
) -> Iterator[list[Running]]:
    """Starts the named parts of the local stack (in the stack's order), each with its
    extra environment, waits until each is healthy, and stops them at the end."""
    components = [
        replace(c, env={**c.env, **env.get(c.name, {})})
        for c in build_components(settings)
        if c.name in names
    ]
    state = settings.state_dir
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (state / "model-repository").mkdir(exist_ok=True)
    prepare_triton_backends(state)
    migrate_database(settings.resolved_database_url)
    ensure_local_api_key(settings.resolved_database_url, settings.api_key_file)
    running: list[Running] = []
    deadline = time.monotonic() + settings.start_timeout_s
    try:
        for component in components:
            item = start_process(component, logs)
            running.append(item)
            if component.infrastructure or component.name == "expert":
                wait_healthy(item, deadline)
                if item.name == "kafka":
                    create_topics(item.address)
        for item in running:
            wait_healthy(item, deadline)
        yield running
    finally:
        stop_all(running)


# --- the load -------------------------------------------------------------------------


@dataclass
class Served:
    """One answered (or failed) call: when it ended, and where it was served."""

    at: float
    target: str
    version: int
    error: str = ""


@dataclass
class LoadLog:
    served: list[Served] = field(default_factory=list)

    def failed(self) -> list[Served]:
        return [s for s in self.served if s.error]

    def first(self, after: float, target: str, version: int) -> float | None:
        for s in self.served:
            if s.at >= after and not s.error and (s.target, s.version) == (target, version):
                return s.at
        return None

    def rate(self, since: float, until: float) -> float:
        count = sum(since <= s.at < until for s in self.served)
        return count / max(until - since, 1e-9)


async def steady_load(
    target: str,
    bodies: list[dict],
    api_key: str,
    concurrency: int,
    stop: asyncio.Event,
    log: LoadLog,
) -> None:
    """Closed-loop calls through the gateway until `stop`; each call's route is logged.
    Calls go round `SESSIONS` sessions, so that canary shares split the traffic."""
    requests = [
        gateway_pb2.CreateChatCompletionRequest(
            metadata=chat_pb2.RequestMetadata(agent_id="bench", session_id=f"s{n}"),
            input=input_from_openai(bodies[n % len(bodies)]),
        )
        for n in range(SESSIONS)
    ]
    metadata = (("authorization", f"Bearer {api_key}"),)
    channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]

    async def worker(number: int) -> None:
        sent = number
        while not stop.is_set():
            request = requests[sent % len(requests)]
            sent += 1
            try:
                answer = await stubs[number % 4].CreateChatCompletion(
                    request, metadata=metadata, timeout=10
                )
                log.served.append(
                    Served(time.time(), answer.route.target, answer.route.model_version)
                )
            except grpc.aio.AioRpcError as error:
                log.served.append(Served(time.time(), "", 0, error.code().name))

    try:
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    finally:
        for channel in channels:
            await channel.close()


async def wait_for_route(bootstrap: str, task_id: str, check, timeout_s: float) -> RolloutChanged:
    """The first route event of the task (from now on) that satisfies `check`."""
    consumer = AIOKafkaConsumer(
        RolloutChanged.topic, bootstrap_servers=bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            async for record in consumer:
                change = RolloutChanged.model_validate_json(record.value)
                if change.task_id == task_id and check(change):
                    return change
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


# --- the benchmark --------------------------------------------------------------------

app = typer.Typer(add_completion=False)


def weather_bodies(workload: Path) -> list[dict]:
    return [json.loads(line)["request"] for line in workload.read_text().splitlines() if line]


CITIES = ["Lima", "Oslo", "Paris", "Tokyo", "Cairo", "Quito", "Delhi", "Rome", "Seoul"]


def weather_record(city: str, number: int) -> dict:
    """One recorded call: the agent asks for the weather, the expert calls a tool."""
    arguments = json.dumps({"city": city, "date": "2019-03-02"})
    call = {
        "id": f"call_{number}",
        "type": "function",
        "function": {"name": "GetWeather", "arguments": arguments},
    }
    return {
        "request": {
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are a weather agent."},
                {"role": "user", "content": f"What's the weather in {city} tomorrow?"},
            ],
            "tools": [WEATHER_TOOL],
        },
        "response": {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                }
            ],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
        },
        "metadata": {"session_id": f"s{number}"},
    }


def weather_workload(path: Path) -> Path:
    """The replay expert's workload: a weather question per city."""
    records = [weather_record(city, n) for n, city in enumerate(CITIES)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "GetWeather",
        "description": "Weather of a city on a date",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "date": {"type": "string"}},
            "required": ["city"],
        },
    },
}

DEPLOYER_ENV = {
    "DEPLOYER_CANARY_SHARES": "[0.1, 0.5]",
    "DEPLOYER_GATE__MIN_SAMPLES": "30",
    "DEPLOYER_GATE__MIN_AGREEMENT": "0.9",
    "DEPLOYER_TICK_S": "0.2",
    "DEPLOYER_DRAIN_GRACE_S": "60",
    "DEPLOYER_WARMUP_REQUESTS": "3",
}
ROUTER_ENV = {"ROUTER_CHECK_SHARE": "0.2"}
# The bench's tenant may call far above the measured rate.
GATEWAY_ENV = {"GATEWAY_RATE_LIMIT_RPS": "100000", "GATEWAY_RATE_LIMIT_BURST": "100000"}
SESSIONS = 997
PARTS = ["kafka", "triton", "expert", "router", "gateway", "deployer"]
MODEL, TASK = "intern-weather", "weather"


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


async def scenario(settings: StackSettings, concurrency: int, good_calls: int) -> dict:
    bootstrap = settings.resolved_kafka_bootstrap_servers
    repository = settings.state_dir.resolve() / "model-repository"
    workload = Path(settings.workload)
    bodies = weather_bodies(workload)
    signature = request_signature(bodies[0])
    url = settings.resolved_database_url
    gateway = f"{settings.host}:{settings.gateway_port}"
    log, stop = LoadLog(), asyncio.Event()
    load = asyncio.create_task(
        steady_load(
            gateway, bodies, settings.api_key_file.read_text().strip(), concurrency, stop, log
        )
    )
    try:
        await asyncio.sleep(5)  # steady state first
        say(f"steady load: {log.rate(time.time() - 4, time.time()):.0f} calls/s")
        write_version(repository, MODEL, 1, planted_model())
        full = asyncio.create_task(wait_for_route(bootstrap, TASK, lambda c: c.mode == "full", 300))
        registered_1 = time.time()
        await publish(bootstrap, register(url, TASK, signature, MODEL, 1, 0.95))
        await full
        first_full_at = time.time()
        say(f"version 1 at full after {first_full_at - registered_1:.1f} s")
        await asyncio.sleep(3)
        # The second version: right at first (passes shadow and the canaries), then wrong.
        write_version(repository, MODEL, 2, planted_model(good_calls))
        rollback = asyncio.create_task(
            wait_for_route(bootstrap, TASK, lambda c: c.reason.startswith("rollback"), 300)
        )
        registered_2 = time.time()
        await publish(bootstrap, register(url, TASK, signature, MODEL, 2, 0.97))
        decided = await rollback
        say(f"rolled back: {decided.reason}")
        await asyncio.sleep(3)
    finally:
        stop.set()
        await load
    decided_at = decided.occurred_at.timestamp()
    swap_1 = log.first(registered_1, "intern", 1)
    swap_2 = log.first(registered_2, "intern", 2)
    back = log.first(
        decided_at, "intern" if decided.target != "expert" else "expert", decided.model_version
    )
    span = (log.served[0].at, log.served[-1].at)
    return {
        "failed_requests": len(log.failed()),
        "requests": len(log.served),
        "requests_per_s": round(len(log.served) / (span[1] - span[0]), 1),
        "swap_seconds": round(swap_2 - registered_2, 3) if swap_2 else None,
        "first_swap_seconds": round(swap_1 - registered_1, 3) if swap_1 else None,
        "first_full_seconds": round(first_full_at - registered_1, 3),
        "rollback_seconds": round(back - decided_at, 3) if back else None,
        "rollback_reason": decided.reason,
        "rolled_back_to": f"{decided.target} v{decided.model_version}",
    }


@app.command()
def main(
    out: Path = typer.Option(Path("bench-results/rollout.json"), help="Result file"),
    concurrency: int = typer.Option(16, min=1, max=512, help="Calls in flight"),
    rounds: int = typer.Option(3, min=1, max=10, help="Runs, each on a fresh stack"),
    good_calls: int = typer.Option(
        300, min=1, help="Calls the second version answers right before it turns wrong"
    ),
) -> None:
    """Swap a version in and roll one back under steady load; write the figures."""
    runs = []
    for number in range(rounds):
        state = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
        settings = fresh_settings(state, weather_workload(state / "weather.jsonl"), deployer=True)
        # The gateway's embedded router serves the calls: it takes the router's settings.
        gateway = {**GATEWAY_ENV, **ROUTER_ENV}
        env = {"deployer": DEPLOYER_ENV, "router": ROUTER_ENV, "gateway": gateway}
        with running_parts(settings, PARTS, env):
            run = asyncio.run(scenario(settings, concurrency, good_calls))
        shutil.rmtree(state)  # kept, with the parts' logs, when the round fails
        run["load_average"] = os.getloadavg()
        print(f"round {number + 1}: {json.dumps(run)}", flush=True)
        runs.append(run)
    summary = {
        "failed_requests": sum(r["failed_requests"] for r in runs),
        "swap_seconds": median([r["swap_seconds"] for r in runs]),
        "rollback_seconds": median([r["rollback_seconds"] for r in runs]),
        "requests_per_s": median([r["requests_per_s"] for r in runs]),
        "statistic": f"median of {rounds} rounds",
        "cpu_cores": os.cpu_count(),
        "rounds": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


if __name__ == "__main__":
    app()
