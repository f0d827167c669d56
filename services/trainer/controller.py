"""Which tasks get an intern, and when: task events in, training jobs out.

For every `TaskChanged` the policy decides whether the task deserves an intern; if so, and
the task has no active job, and it grew enough since its last job, a base model is chosen
(S4: `catalog.select_base`, the reasons recorded on the job), a `training_jobs` row is
written and the job is sent to the Celery queue of the chosen model's device. Idempotent:
the same event twice gives one job. Operators start and cancel jobs through the control
API, which calls `start_job` and `cancel_job` here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common.db import Task, Trace, TrainingJob
from interns.common.events import TaskChanged, TrainingJobProgress
from interns.common.logging import get_logger
from interns.trainer.catalog import CatalogError, Selection, select_base
from interns.trainer.models import BaseModelSpec
from interns.trainer.pipeline import ACTIVE, as_utc, progress_event
from interns.trainer.settings import TrainerSettings

log = get_logger(__name__)

Submit = Callable[[str, str], None]  # (job_id, queue)
PublishProgress = Callable[[TrainingJobProgress], Awaitable[None]]
CHARS_PER_TOKEN = 3.5


class JobError(Exception):
    """A job request that cannot be carried out; `kind` is invalid, not_found or conflict."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def context_needed(engine: Engine, task_id: str, sample: int = 200) -> int:
    """Tokens a base model must take for this task: the longest conversation and answer
    in a sample of its traces (tool schemas left out, as the intern's prompt leaves them)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Trace.request, Trace.response)
            .where(Trace.task_id == task_id, Trace.status == "ok")
            .limit(sample)
        ).all()
    longest = 0
    for request, response in rows:
        messages = json.dumps((request or {}).get("messages", []))
        answer = json.dumps((response or {}).get("message") or {})
        longest = max(longest, len(messages) + len(answer))
    return int(longest / CHARS_PER_TOKEN)


class TrainingController:
    def __init__(
        self,
        engine: Engine,
        settings: TrainerSettings,
        catalog: Sequence[BaseModelSpec],
        submit: Submit,
        publish: PublishProgress,
    ):
        self._engine = engine
        self._settings = settings
        self._catalog = tuple(catalog)
        self._submit = submit
        self._publish = publish

    def select(self, output_kind: str, task_id: str, requested: str = "") -> Selection:
        gpu = self._settings.gpu_workers
        return select_base(
            output_kind,
            self._catalog,
            device="gpu" if gpu else "cpu",
            memory_budget_mb=(
                self._settings.gpu_memory_budget_mb if gpu else self._settings.memory_budget_mb
            ),
            allowed_licenses=self._settings.licenses,
            context_needed=context_needed(self._engine, task_id),
            requested=requested or self._settings.base_model,
        )

    async def on_task_changed(self, change: TaskChanged) -> TrainingJob | None:
        """Starts a job for the task when the policy says so; None when it does not (the
        reasons are logged)."""
        if change.change == "retired" or not self._settings.auto_train:
            return None
        decision = self._settings.policy.decide(change)
        if not decision.train:
            log.info("no intern yet", task_id=change.task_id, reasons=decision.reasons)
            return None
        try:
            return await self._create(change.task_id, change.output_kind, change.size)
        except JobError as refused:
            log.info("no new job", task_id=change.task_id, reason=str(refused))
            return None

    async def start_job(self, task_id: str, requested_base: str = "") -> TrainingJob:
        """An operator's job for `task_id`: the policy is not asked, the guards still hold."""
        task = await asyncio.to_thread(self._task, task_id)
        if task is None:
            raise JobError("not_found", f"no task {task_id!r}")
        return await self._create(
            task.task_id, task.output_kind, task.size, requested_base, by_operator=True
        )

    async def _create(
        self,
        task_id: str,
        output_kind: str,
        size: int,
        requested: str = "",
        by_operator: bool = False,
    ) -> TrainingJob:
        job = await asyncio.to_thread(
            self._create_and_submit, task_id, output_kind, size, requested, by_operator
        )
        await self._publish(progress_event(job))
        return job

    def _create_and_submit(
        self, task_id: str, output_kind: str, size: int, requested: str, by_operator: bool
    ) -> TrainingJob:
        with Session(self._engine) as session:
            jobs = session.exec(
                select(TrainingJob)
                .where(TrainingJob.task_id == task_id)
                .order_by(col(TrainingJob.created_at).desc())
            ).all()
            active = [job for job in jobs if job.status in ACTIVE]
            if active:
                raise JobError("conflict", f"task {task_id!r} has an active job {active[0].job_id}")
            if (
                not by_operator
                and jobs
                and not self._settings.policy.grew_enough(size, jobs[0].task_size)
            ):
                raise JobError(
                    "conflict",
                    f"task {task_id!r} has {size} examples; its last job had"
                    f" {jobs[0].task_size} (x{self._settings.policy.retrain_growth} needed)",
                )
            try:
                selection = self.select(output_kind, task_id, requested)
            except CatalogError as error:
                raise JobError("invalid", str(error)) from None
            job = TrainingJob(
                job_id=uuid.uuid4().hex,
                task_id=task_id,
                base_model=selection.spec.name,
                device=selection.spec.device,
                task_size=size,
                selection=selection.reasons,
            )
            session.add(job)
            session.commit()
            session.refresh(job)
        self._submit(job.job_id, job.device)
        log.info(
            "training job queued",
            job_id=job.job_id,
            task_id=task_id,
            base_model=job.base_model,
            queue=job.device,
            why=selection.reasons[0],
        )
        return job

    def _task(self, task_id: str) -> Task | None:
        with Session(self._engine) as session:
            return session.get(Task, task_id)

    async def cancel_job(self, job_id: str) -> TrainingJob:
        """Asks the job to stop. A queued job is cancelled at once; a running one stops at
        its next training step (its worker records `cancelled`)."""
        job = await asyncio.to_thread(self._request_cancel, job_id)
        if job.status == "cancelled":
            await self._publish(progress_event(job))
        return job

    def _request_cancel(self, job_id: str) -> TrainingJob:
        with Session(self._engine) as session:
            job = session.get(TrainingJob, job_id)
        if job is None:
            raise JobError("not_found", f"no training job {job_id!r}")
        if job.status not in ACTIVE:
            raise JobError("conflict", f"job {job_id} has already ended ({job.status})")
        with Session(self._engine) as session:
            # Conditional updates: a worker may claim the job at this very moment; it then
            # sees the request and stops at its first step.
            now = datetime.now(UTC)
            session.exec(
                update(TrainingJob)
                .where(col(TrainingJob.job_id) == job_id, col(TrainingJob.status).in_(ACTIVE))
                .values(cancel_requested=True, updated_at=now)
            )
            session.exec(
                update(TrainingJob)
                .where(col(TrainingJob.job_id) == job_id, col(TrainingJob.status) == "queued")
                .values(status="cancelled")
            )
            session.commit()
            job = session.get(TrainingJob, job_id)
            session.refresh(job)
        return job

    def resubmit_unfinished(self) -> int:
        """Sends again every queued job, and every running job whose worker has gone quiet
        for longer than the lease: a restart may have come between writing a job and
        sending it, or a broker without persistence may have lost it. A job sent twice is
        one job (same Celery task id, idempotent run)."""
        stale = datetime.now(UTC) - timedelta(seconds=self._settings.job_lease_s)
        with Session(self._engine) as session:
            jobs = session.exec(
                select(TrainingJob).where(col(TrainingJob.status).in_(ACTIVE))
            ).all()
        unfinished = [
            job for job in jobs if job.status == "queued" or as_utc(job.updated_at) < stale
        ]
        for job in unfinished:
            self._submit(job.job_id, job.device)
        return len(unfinished)
