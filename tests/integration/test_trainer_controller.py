"""The trainer service on the real stack: a task event on Kafka that meets the training
policy becomes one training job (however often it is delivered), with its base model and
the reasons; the stack's Celery worker takes it and, for a task without usable traces,
fails it with a message that says so. An operator starts a job by hand."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from sqlmodel import Session

from interns.api.v1 import control_pb2, control_pb2_grpc
from interns.common.db import Task, make_engine
from interns.common.events import TaskChanged

pytestmark = pytest.mark.integration


def add_task(settings, task_id: str) -> None:
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as session:
        session.add(Task(task_id=task_id, size=5000, output_kind="tool_call", consistency=1.0))
        session.commit()
    engine.dispose()


async def jobs_of(control, task_id: str):
    listed = await control.ListTrainingJobs(
        control_pb2.ListTrainingJobsRequest(task_id=task_id), timeout=10
    )
    return list(listed.jobs)


async def job_ended(control, task_id: str, count: int):
    """The task's newest job once it failed and the task has `count` jobs."""
    async with asyncio.timeout(60):
        while True:
            jobs = await jobs_of(control, task_id)
            if len(jobs) == count and jobs[0].status == "failed":
                return jobs[0]
            await asyncio.sleep(0.3)


async def test_a_qualifying_task_event_becomes_one_job_that_the_worker_runs(stack):
    settings, _ = stack
    task_id = f"big-{uuid.uuid4().hex[:8]}"
    add_task(settings, task_id)
    event = TaskChanged(
        task_id=task_id,
        change="discovered",
        size=5000,
        traffic_share=0.5,
        output_kind="tool_call",
        consistency=1.0,
    )
    producer = AIOKafkaProducer(bootstrap_servers=f"{settings.host}:{settings.kafka_port}")
    await producer.start()
    try:
        for _ in range(2):  # delivered twice: one job
            await producer.send_and_wait(TaskChanged.topic, event.to_bytes(), key=event.key())
    finally:
        await producer.stop()

    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.trainer_port}") as channel:
        control = control_pb2_grpc.ControlServiceStub(channel)
        job = await job_ended(control, task_id, 1)
        assert job.base_model == "smollm2-135m-instruct" and job.device == "cpu"
        assert job.selection[0].startswith("smollm2-135m-instruct: chosen")
        assert "0 usable examples" in job.error

        # By hand: the policy is not asked, so the same task gets a job at once.
        started = await control.StartTrainingJob(
            control_pb2.StartTrainingJobRequest(task_id=task_id, base_model="tiny"), timeout=10
        )
        assert started.job.selection == ["tiny: requested"]
        assert (await job_ended(control, task_id, 2)).job_id == started.job.job_id
        assert len(await jobs_of(control, task_id)) == 2  # the duplicate event added none
