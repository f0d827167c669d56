"""`interns train`, `interns jobs`, `jobs watch` and `jobs cancel` against the real control
API (gRPC, in process) and database; the worker's progress is written to the job row as
a worker writes it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from interns.cli.main import app
from interns.common.db import ModelVersion, Task
from interns.trainer.catalog import DEFAULT_CATALOG
from interns.trainer.control import ControlPlane
from interns.trainer.controller import TrainingController
from interns.trainer.pipeline import load_job, update_job
from interns.trainer.settings import TrainerSettings
from tests.servers import control_api_in_thread


@pytest.fixture
def control_api(engine, monkeypatch):
    with Session(engine) as session:
        session.add(Task(task_id="t1", size=300, output_kind="tool_call"))
        session.commit()
    submitted = []

    async def publish(event):
        pass

    controller = TrainingController(
        engine,
        TrainerSettings(database_url=""),
        DEFAULT_CATALOG,
        lambda job, queue: submitted.append((job, queue)),
        publish,
    )
    with control_api_in_thread(ControlPlane(engine, publish, controller)) as address:
        monkeypatch.setenv("TRAINER_ADDR", address)
        yield submitted


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_train_queues_a_job_that_jobs_lists(engine, control_api):
    started = run("train", "t1", "--base", "tiny")
    assert started.exit_code == 0, started.output
    assert "base model: tiny: requested" in started.output
    ((job_id, queue),) = control_api
    assert queue == "cpu"
    listed = run("jobs")
    assert job_id in listed.output and "queued" in listed.output
    shown = run("jobs", "show", job_id)
    assert "tiny: requested" in shown.output


def test_watch_follows_the_progress_until_the_model_is_registered(engine, control_api):
    run("train", "t1")
    ((job_id, _),) = control_api

    def worker():
        for step in range(1, 6):
            update_job(
                engine,
                job_id,
                status="running",
                step=step,
                total_steps=5,
                loss=2.0 / step,
                eta_seconds=5.0 - step,
            )
            time.sleep(0.15)
        with Session(engine) as session:
            session.add(
                ModelVersion(
                    model="intern-t1",
                    version=1,
                    task_id="t1",
                    status="registered",
                    scores={"exact_match": 0.95},
                )
            )
            session.commit()
        update_job(engine, job_id, status="succeeded", model="intern-t1", model_version=1)

    writer = threading.Thread(target=worker)
    writer.start()
    watched = run("jobs", "watch", job_id, "--interval", "0.1")
    writer.join()
    assert watched.exit_code == 0, watched.output
    assert "5/5" in watched.output and "loss 0.400" in watched.output
    assert "model: intern-t1 v1: registered (exact_match 0.95)" in watched.output


def test_cancel_stops_a_queued_job_and_refuses_an_ended_one(engine, control_api):
    run("train", "t1")
    ((job_id, _),) = control_api
    cancelled = run("jobs", "cancel", job_id)
    assert cancelled.exit_code == 0 and f"job {job_id} is cancelled" in cancelled.output
    assert load_job(engine, job_id).status == "cancelled"
    again = run("jobs", "cancel", job_id)
    assert again.exit_code == 1 and "already ended (cancelled)" in again.output
    assert run("jobs", "watch", job_id).exit_code == 1


def test_bad_requests_name_the_problem(control_api):
    assert "no task 'nope'" in run("train", "nope").output
    assert "not in the catalog" in run("train", "t1", "--base", "gpt-5").output
    assert "no training job" in run("jobs", "show", "nope").output
