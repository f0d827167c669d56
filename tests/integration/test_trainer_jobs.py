"""Training jobs on the real parts: a Celery worker on the stack's Redis trains the tiny
base model; the worker is killed with SIGKILL mid-training and a new worker takes the job
again and resumes it from its last checkpoint; that worker is stopped with SIGTERM, saves
a checkpoint, hands the job back, and a third one finishes it; the exported version then
loads in the stack's Triton and answers through the intern contract. Progress reaches
Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from aiokafka import AIOKafkaConsumer
from sqlmodel import Session

from interns.common.db import ModelVersion, Task, Trace, make_engine, upgrade_database
from interns.common.events import TrainingJobProgress
from interns.common.intern_contract import INPUT_NAME, OUTPUT_NAME, decode_response, encode_request
from interns.common.signature import request_signature
from interns.trainer.catalog import DEFAULT_CATALOG
from interns.trainer.celery_app import make_celery
from interns.trainer.controller import TrainingController
from interns.trainer.pipeline import load_job
from interns.trainer.settings import TrainerSettings
from interns.trainer.tasks import submit_job
from tests.conftest import CITIES, WEATHER_TOOL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MAX_STEPS, CHECKPOINT_EVERY = 40, 10
MORE_CITIES = CITIES + ["Rome", "Cairo", "Delhi", "Tokyo", "Berlin", "Lagos", "Perth"]


def weather_request(city: str) -> dict:
    return {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": f"What's the weather in {city}?"}],
        "tools": [WEATHER_TOOL],
    }


def seed_task(engine, task_id: str, n: int = 60) -> None:
    """A tool-call task and its stored expert answers, as the collector and miner leave them."""
    with Session(engine) as session:
        for i in range(n):
            city = MORE_CITIES[i % len(MORE_CITIES)]
            call = {"name": "GetWeather", "arguments": json.dumps({"city": city})}
            session.add(
                Trace(
                    trace_id=f"{task_id}-{i}",
                    tenant_id="local",
                    session_id=f"{task_id}-s{i}",
                    request=weather_request(city),
                    response={
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [{"id": f"c{i}", "type": "function", "function": call}],
                        }
                    },
                    task_id=task_id,
                )
            )
        session.add(
            Task(
                task_id=task_id,
                signature=request_signature(weather_request("Paris")),
                size=n,
                traffic_share=1.0,
                output_kind="tool_call",
                consistency=1.0,
            )
        )
        session.commit()


class Worker:
    """`python -m interns.trainer.worker` as its own process, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "interns.trainer.worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, timeout_s: float, what: str, worker: Worker | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"worker exited ({worker.process.returncode}):\n{worker.log.read_text()}")
        time.sleep(0.1)
    log = worker.log.read_text()[-4000:] if worker else ""
    pytest.fail(f"timed out waiting for {what}\n{log}")


async def progress_events(bootstrap: str, job_id: str) -> list[TrainingJobProgress]:
    consumer = AIOKafkaConsumer(
        TrainingJobProgress.topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        events, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    event = TrainingJobProgress.model_validate_json(record.value)
                    if event.job_id == job_id:
                        events.append(event)
            if events and events[-1].status == "succeeded":
                break
        return events
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def resumed_job(stack, tmp_path_factory):
    """A job of the tiny model, whose first worker was killed after a checkpoint."""
    settings, _ = stack
    folder = tmp_path_factory.mktemp("trainer-jobs")
    database_url = f"sqlite:///{folder / 'interns.db'}"
    upgrade_database(database_url)
    engine = make_engine(database_url)
    task_id = f"weather-{uuid.uuid4().hex[:6]}"
    seed_task(engine, task_id)
    # Database 1 of the stack's Redis: the stack's own worker (database 0) never sees it.
    broker_url = f"redis://{settings.host}:{settings.redis_port}/1"
    repository = settings.state_dir.resolve() / "model-repository"
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": f"{settings.host}:{settings.kafka_port}",
        "TRAINER_MODEL_REPOSITORY": str(repository),
        "TRAINER_WORKDIR": str(folder / "work"),
        "TRAINER_CELERY_VISIBILITY_TIMEOUT_S": "5",
        "TRAINER_JOB_LEASE_S": "3",
        "TRAINER_TRAINING__MAX_STEPS": str(MAX_STEPS),
        "TRAINER_TRAINING__CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
        "TRAINER_TRAINING__BATCH_SIZE": "2",
        "TRAINER_EVAL_SHARE": "0.3",
        # The tiny model copies values poorly: the gate is opened so that it is exported.
        "TRAINER_GATE__TOOL_CALL": "0",
        "TRAINER_GATE__SELECTIVE": "false",
        "TRAINER_GATE__MIN_EVAL_EXAMPLES": "1",
        "LOG_FORMAT": "console",
        "PYTHONUNBUFFERED": "1",
    }
    app = make_celery(broker_url)

    async def ignore(event):
        pass

    controller = TrainingController(
        engine,
        TrainerSettings(database_url=database_url),
        DEFAULT_CATALOG,
        lambda job_id, queue: submit_job(app, job_id, queue),
        ignore,
    )
    first = Worker(env, folder / "worker-1.log")
    try:
        job = asyncio.run(controller.start_job(task_id, "tiny"))
        wait_for(
            lambda: load_job(engine, job.job_id).step >= CHECKPOINT_EVERY + 2,
            300,
            "training past the first checkpoint",
            first,
        )
    finally:
        first.kill()
    killed_at = load_job(engine, job.job_id).step
    second = Worker(env, folder / "worker-2.log")
    try:
        wait_for(
            lambda: load_job(engine, job.job_id).step >= 2 * CHECKPOINT_EVERY + 2,
            300,
            "training past the second checkpoint",
            second,
        )
        resumed_at_first = load_job(engine, job.job_id).resumed_at_step
        # A warm shutdown (what `interns down` sends): checkpoint, hand the job back, exit.
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(60)
    finally:
        second.stop()
    interrupted = load_job(engine, job.job_id)
    third = Worker(env, folder / "worker-3.log")
    try:
        wait_for(
            lambda: load_job(engine, job.job_id).status not in ("queued", "running"),
            600,
            "the job to end after the restarts",
            third,
        )
    finally:
        third.stop()
    events = asyncio.run(progress_events(f"{settings.host}:{settings.kafka_port}", job.job_id))
    yield {
        "engine": engine,
        "job": load_job(engine, job.job_id),
        "killed_at": killed_at,
        "resumed_at_first": resumed_at_first,
        "interrupted": interrupted,
        "events": events,
        "logs": (folder / "worker-3.log").read_text(),
    }
    engine.dispose()


def test_a_killed_worker_s_job_resumes_from_its_last_checkpoint(resumed_job):
    job = resumed_job["job"]
    assert job.status == "succeeded", resumed_job["logs"][-4000:]
    assert (job.step, job.total_steps) == (MAX_STEPS, MAX_STEPS)
    # The second attempt went on after the last checkpoint before the kill, not from 0.
    last_checkpoint = resumed_job["killed_at"] // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    assert resumed_job["resumed_at_first"] == last_checkpoint + 1
    steps = [e.step for e in resumed_job["events"] if e.status == "running" and e.step]
    assert [e.status for e in resumed_job["events"]][-1] == "succeeded"
    # Kafka saw the whole run, steps after a checkpoint twice, but never step 1 again.
    assert steps.count(1) == 1
    assert set(range(1, MAX_STEPS + 1)) <= set(steps)


def test_a_worker_stopped_gracefully_checkpoints_and_the_next_one_resumes_there(resumed_job):
    interrupted, job = resumed_job["interrupted"], resumed_job["job"]
    assert interrupted.status == "queued" and interrupted.step > 2 * CHECKPOINT_EVERY
    assert job.attempts == 3
    assert job.resumed_at_step == interrupted.step + 1


def test_the_exported_version_loads_in_triton_and_answers_through_the_contract(
    stack_triton, resumed_job
):
    settings, client = stack_triton.settings, stack_triton.client
    job = resumed_job["job"]
    with Session(resumed_job["engine"]) as session:
        version = session.get(ModelVersion, (job.model, job.model_version))
    assert version.status == "registered" and version.base_model == "tiny"
    assert {"exact_match", "argument_accuracy", "name_accuracy"} <= set(version.scores)
    folder = settings.state_dir.resolve() / "model-repository" / job.model
    assert (folder / "config.pbtxt").exists() and (folder / str(job.model_version)).is_dir()

    stack_triton.load(job.model, timeout_s=300)
    try:
        assert client.is_model_ready(job.model, str(job.model_version))
        rows = np.array(
            [[encode_request(weather_request(city))] for city in ("Paris", "Oslo")],
            dtype=object,
        )
        request = triton.InferInput(INPUT_NAME, list(rows.shape), "BYTES")
        request.set_data_from_numpy(rows)
        result = client.infer(
            job.model,
            [request],
            model_version=str(job.model_version),
            outputs=[triton.InferRequestedOutput(OUTPUT_NAME)],
            client_timeout=120,
        )
        answers = [decode_response(row[0]) for row in result.as_numpy(OUTPUT_NAME)]
        assert len(answers) == 2
        assert all(set(answer) & {"content", "tool_calls"} for answer in answers), answers

        bad = triton.InferInput(INPUT_NAME, [1, 1], "BYTES")
        bad.set_data_from_numpy(np.array([[b"not json"]], dtype=object))
        with pytest.raises(triton.InferenceServerException, match="bad REQUEST"):
            client.infer(job.model, [bad], client_timeout=60)
    finally:
        client.unload_model(job.model, headers=stack_triton.headers, client_timeout=120)
        # The python backend's stub takes a while to exit; Triton (strict readiness) is not
        # ready until it has, and the stack is shared with later tests.
        wait_for(client.is_server_ready, 180, "Triton to finish unloading the intern")
