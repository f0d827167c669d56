"""A training job end to end with a stand-in ML core: progress, gate, export, registration,
cancellation, and running again after a redelivery (at-least-once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from interns.common.db import ModelVersion, Rollout, Task, TrainingJob
from interns.common.events import ModelRegistered, TrainingJobProgress
from interns.trainer.catalog import DEFAULT_CATALOG
from interns.trainer.pipeline import (
    JobBusy,
    JobContext,
    JobInterrupted,
    load_job,
    run_job,
    update_job,
)
from interns.trainer.settings import TrainerSettings
from tests.trainer.fakes import FakeCore, WorkerKilled


@pytest.fixture
def setup(engine, tmp_path):
    settings = TrainerSettings(
        model_repository=str(tmp_path / "repo"), workdir=tmp_path / "work", database_url=""
    )
    with Session(engine) as session:
        session.add(Task(task_id="t1", size=40, output_kind="tool_call"))
        session.commit()
    events = []
    fake = FakeCore()

    def context(**overrides) -> JobContext:
        values = dict(
            engine=engine,
            settings=settings,
            catalog=DEFAULT_CATALOG,
            core=fake.core(),
            publish=events.append,
            publish_and_wait=lambda event: events.append(event) or True,
            lease_s=60,
        )
        return JobContext(**{**values, **overrides})

    return context, fake, events, Path(settings.model_repository)


def new_job(engine, job_id="j1") -> str:
    with Session(engine) as session:
        session.add(TrainingJob(job_id=job_id, task_id="t1", base_model="tiny"))
        session.commit()
    return job_id


def test_a_passing_candidate_is_exported_registered_and_announced(engine, setup):
    context, fake, events, repository = setup
    result = run_job(new_job(engine), context())
    assert result == {
        "job_id": "j1",
        "status": "succeeded",
        "model": "intern-t1",
        "model_version": 1,
        "error": "",
    }
    assert (repository / "intern-t1" / "1" / "model" / "weights.json").exists()
    assert (repository / "intern-t1" / "config.pbtxt").exists()
    with Session(engine) as session:
        version = session.get(ModelVersion, ("intern-t1", 1))
    assert version.status == "registered" and version.scores["exact_match"] == 1.0
    assert version.scores["eval_examples"] == 8 and version.latency_ms == 12.5
    assert version.scores["train_examples"] == 32 and fake.trained_on == 32
    progress = [e for e in events if isinstance(e, TrainingJobProgress)]
    assert [e.status for e in progress][0] == "running" and progress[-1].status == "succeeded"
    assert [e.step for e in progress if e.status == "running"][1:] == list(range(1, 11))
    (registered,) = [e for e in events if isinstance(e, ModelRegistered)]
    assert registered.passed and (registered.model, registered.version) == ("intern-t1", 1)
    job = load_job(engine, "j1")
    assert (job.step, job.total_steps, job.attempts) == (10, 10, 1)
    assert not (context().settings.workdir / "j1").exists()


def test_with_a_related_share_a_tool_call_task_also_trains_on_other_tasks_calls(engine, setup):
    context, fake, _, _ = setup
    settings = context().settings.model_copy(update={"related_share": 1.0})
    run_job(new_job(engine), context(settings=settings))
    # Its own 32 training examples and the other tasks' calls of its tools.
    assert fake.trained_on == 32 + 5
    with Session(engine) as session:
        scores = session.get(ModelVersion, ("intern-t1", 1)).scores
    assert scores["train_examples"] == 32 and scores["related_examples"] == 5


def test_the_serving_version_is_scored_on_the_new_versions_held_out_set(engine, setup):
    context, fake, events, repository = setup
    run_job(new_job(engine, "j1"), context())
    with Session(engine) as session:
        session.add(Rollout(task_id="t1", target="intern-t1", model_version=1, mode="full"))
        session.commit()
    fake.score = 0.8  # both the candidate and the serving v1, on the same examples
    run_job(new_job(engine, "j2"), context())
    with Session(engine) as session:
        scores = session.get(ModelVersion, ("intern-t1", 2)).scores
    assert scores["baseline_version"] == 1 and scores["baseline_exact_match"] == 0.8
    with Session(engine) as session:
        first = session.get(ModelVersion, ("intern-t1", 1)).scores
    assert "baseline_version" not in first


def test_a_failing_candidate_is_recorded_not_exported_and_its_number_never_reused(engine, setup):
    context, fake, events, repository = setup
    fake.score = 0.5
    run_job(new_job(engine, "j1"), context())
    assert not (repository / "intern-t1").exists()
    with Session(engine) as session:
        assert session.get(ModelVersion, ("intern-t1", 1)).status == "rejected"
    assert [e.passed for e in events if isinstance(e, ModelRegistered)] == [False]
    fake.score = 1.0
    assert run_job(new_job(engine, "j2"), context())["model_version"] == 2
    assert sorted(p.name for p in (repository / "intern-t1").iterdir()) == ["2", "config.pbtxt"]


def test_a_redelivered_job_that_ended_does_nothing(engine, setup):
    context, fake, events, _ = setup
    run_job(new_job(engine), context())
    trained, published = len(fake.trained), len(events)
    assert run_job("j1", context())["status"] == "succeeded"
    assert (len(fake.trained), len(events)) == (trained, published)


def test_a_job_held_by_a_live_worker_is_not_run_twice(engine, setup):
    context, *_ = setup
    update_job(engine, new_job(engine), status="running")
    with pytest.raises(JobBusy):
        run_job("j1", context())


def test_a_killed_workers_job_resumes_from_its_last_checkpoint(engine, setup):
    context, fake, events, _ = setup
    fake.kill_at_step = 7  # checkpoints at 4 and 8: the one at 4 is the last
    with pytest.raises(WorkerKilled):
        run_job(new_job(engine), context())
    assert load_job(engine, "j1").status == "running"
    # The lease runs out: no heartbeat from the dead worker.
    update_job(engine, "j1")
    with Session(engine) as session:
        job = session.get(TrainingJob, "j1")
        job.updated_at = datetime.now(UTC) - timedelta(minutes=5)
        session.add(job)
        session.commit()
    assert run_job("j1", context())["status"] == "succeeded"
    assert fake.trained == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10]
    job = load_job(engine, "j1")
    assert (job.attempts, job.resumed_at_step, job.step) == (2, 5, 10)


def test_cancelling_a_running_job_stops_it_at_the_next_step(engine, setup):
    context, fake, events, repository = setup
    fake.on_step = lambda step: step == 3 and update_job(engine, "j1", cancel_requested=True)
    result = run_job(new_job(engine), context(cancel_poll_s=0))
    assert result["status"] == "cancelled"
    assert fake.trained == [1, 2, 3]
    assert not repository.exists()
    assert [e for e in events if isinstance(e, TrainingJobProgress)][-1].status == "cancelled"
    with Session(engine) as session:
        assert not session.exec(select(ModelVersion)).all()


def test_an_error_fails_the_job_with_its_message(engine, setup):
    context, *_ = setup
    with Session(engine) as session:
        session.add(TrainingJob(job_id="j9", task_id="gone", base_model="tiny"))
        session.commit()
    result = run_job("j9", context())
    assert result["status"] == "failed" and "task 'gone' no longer exists" in result["error"]


def test_a_worker_shutting_down_checkpoints_and_queues_the_job_again(engine, setup):
    context, fake, events, _ = setup
    ctx = context()
    fake.on_step = lambda step: step == 6 and ctx.stopping.set()
    with pytest.raises(JobInterrupted):
        run_job(new_job(engine), ctx)
    job = load_job(engine, "j1")
    assert (job.status, job.step) == ("queued", 6)
    assert (ctx.settings.workdir / "j1" / "checkpoints").exists()
    assert run_job("j1", context())["status"] == "succeeded"
    assert fake.trained == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10]
