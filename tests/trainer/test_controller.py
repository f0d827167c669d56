"""Task events become training jobs: the policy, the guards, the queue, idempotence;
operators start and cancel jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from interns.common.db import Task, TrainingJob
from interns.common.events import TaskChanged
from interns.trainer.catalog import DEFAULT_CATALOG
from interns.trainer.controller import JobError, TrainingController
from interns.trainer.pipeline import update_job
from interns.trainer.settings import TrainerSettings


@pytest.fixture
def controller(engine):
    with Session(engine) as session:
        session.add(Task(task_id="t1", size=500, output_kind="tool_call"))
        session.commit()
    submitted, published = [], []

    async def publish(event):
        published.append(event)

    settings = TrainerSettings(database_url="", gpu_workers=False)
    control = TrainingController(
        engine,
        settings,
        DEFAULT_CATALOG,
        lambda job, queue: submitted.append((job, queue)),
        publish,
    )
    return control, submitted, published


def change(size=500, **fields) -> TaskChanged:
    values = dict(
        task_id="t1",
        change="updated",
        size=size,
        traffic_share=0.2,
        output_kind="tool_call",
        consistency=0.9,
    )
    return TaskChanged(**{**values, **fields})


def jobs(engine) -> list[TrainingJob]:
    with Session(engine) as session:
        return list(session.exec(select(TrainingJob)))


async def test_a_task_event_queues_one_job_on_the_cpu_queue_with_its_reasons(engine, controller):
    control, submitted, published = controller
    job = await control.on_task_changed(change())
    assert job.base_model == "smollm2-135m-instruct" and job.device == "cpu"
    assert job.selection[0].startswith("smollm2-135m-instruct: chosen")
    assert submitted == [(job.job_id, "cpu")]
    assert [(e.job_id, e.status) for e in published] == [(job.job_id, "queued")]


async def test_the_configured_base_model_is_used_for_the_jobs_the_policy_starts(engine):
    with Session(engine) as session:
        session.add(Task(task_id="t1", size=500, output_kind="tool_call"))
        session.commit()
    settings = TrainerSettings(
        database_url="", gpu_workers=False, base_model="smollm2-135m-instruct-lora"
    )

    async def publish(event):
        pass

    control = TrainingController(
        engine, settings, DEFAULT_CATALOG, lambda job, queue: None, publish
    )
    job = await control.on_task_changed(change())
    assert job.base_model == "smollm2-135m-instruct-lora"
    assert job.selection == ["smollm2-135m-instruct-lora: requested"]


async def test_the_same_event_twice_gives_one_job(engine, controller):
    control, submitted, _ = controller
    await control.on_task_changed(change())
    assert await control.on_task_changed(change()) is None
    assert await control.on_task_changed(change(size=2000)) is None  # still active
    assert len(jobs(engine)) == 1 and len(submitted) == 1


async def test_a_new_job_only_when_the_task_grew_enough_since_the_last(engine, controller):
    control, *_ = controller
    first = await control.on_task_changed(change(size=500))
    update_job(engine, first.job_id, status="succeeded")
    assert await control.on_task_changed(change(size=600)) is None
    second = await control.on_task_changed(change(size=800))
    assert second is not None and second.task_size == 800


async def test_the_policy_keeps_small_or_retired_tasks_from_training(engine, controller):
    control, submitted, _ = controller
    assert await control.on_task_changed(change(size=10)) is None
    assert await control.on_task_changed(change(change="retired")) is None
    assert submitted == []


async def test_a_gpu_base_goes_to_the_gpu_queue(engine, controller):
    control, submitted, _ = controller
    control._settings.gpu_workers = True
    job = await control.on_task_changed(change())
    assert (job.base_model, submitted[-1][1]) == ("smollm2-1.7b-instruct", "gpu")


async def test_an_operator_starts_a_job_on_a_chosen_base_and_cancels_it(engine, controller):
    control, submitted, published = controller
    job = await control.start_job("t1", "tiny")
    assert (job.base_model, job.selection) == ("tiny", ["tiny: requested"])
    with pytest.raises(JobError, match="active job"):
        await control.start_job("t1")
    cancelled = await control.cancel_job(job.job_id)
    assert (cancelled.status, cancelled.cancel_requested) == ("cancelled", True)
    assert published[-1].status == "cancelled"
    with pytest.raises(JobError, match="already ended"):
        await control.cancel_job(job.job_id)
    # By hand, no growth is needed.
    assert (await control.start_job("t1")).task_size == 500


async def test_cancelling_a_running_job_asks_its_worker(engine, controller):
    control, *_ = controller
    job = await control.start_job("t1")
    update_job(engine, job.job_id, status="running")
    asked = await control.cancel_job(job.job_id)
    assert (asked.status, asked.cancel_requested) == ("running", True)


async def test_bad_requests_are_refused_with_reasons(engine, controller):
    control, *_ = controller
    with pytest.raises(JobError, match="no task 'nope'"):
        await control.start_job("nope")
    with pytest.raises(JobError, match="needs a GPU worker"):
        await control.start_job("t1", "smollm2-1.7b-instruct")
    with pytest.raises(JobError, match="no training job"):
        await control.cancel_job("nope")


async def test_unfinished_jobs_are_sent_again_after_a_restart(engine, controller):
    control, submitted, _ = controller
    queued = await control.start_job("t1")
    with Session(engine) as session:
        session.add(Task(task_id="t2", size=300, output_kind="tool_call"))
        session.add(Task(task_id="t3", size=300, output_kind="tool_call"))
        session.commit()
    alive = await control.start_job("t2")
    update_job(engine, alive.job_id, status="running")
    lost = await control.start_job("t3")
    update_job(
        engine,
        lost.job_id,
        status="running",
        updated_at=datetime.now(UTC) - timedelta(seconds=control._settings.job_lease_s + 1),
    )
    submitted.clear()
    assert control.resubmit_unfinished() == 2
    assert sorted(submitted) == sorted([(queued.job_id, "cpu"), (lost.job_id, "cpu")])
