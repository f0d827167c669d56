"""Control-plane logic: read tasks, models, rollouts and jobs; change a task's route;
start and cancel training jobs; manage the API keys of tenants.

Every route change goes through `interns.common.routes` (shared with the deploy controller):
it is written to `rollouts` (current state) and `route_changes` (the
audit trail) in one transaction, then published as a `RolloutChanged` event, which the
routers apply live. API keys are written to `api_keys`, which the gateways read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common import api_keys
from interns.common.db import ApiKey, ModelVersion, Rollout, Task, TrainingJob
from interns.common.routes import MODES, Publish, RouteChanger, RouteError
from interns.trainer.controller import JobError, TrainingController

__all__ = ["MODES", "ControlError", "ControlPlane", "Publish"]


class ControlError(Exception):
    """A control request that cannot be carried out; `kind` maps to a gRPC status."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "invalid", "not_found" or "conflict"


@contextmanager
def _key_errors() -> Iterator[None]:
    try:
        yield
    except api_keys.ApiKeyError as error:
        raise ControlError(error.kind, str(error)) from None


@contextmanager
def _route_errors() -> Iterator[None]:
    try:
        yield
    except RouteError as error:
        raise ControlError(error.kind, str(error)) from None


@contextmanager
def _job_errors() -> Iterator[None]:
    try:
        yield
    except JobError as error:
        raise ControlError(error.kind, str(error)) from None


class ControlPlane:
    def __init__(self, engine: Engine, publish: Publish, jobs: TrainingController | None = None):
        self._engine = engine
        self._publish = publish
        self._jobs = jobs
        self._routes = RouteChanger(engine, publish)

    # --- reads ----------------------------------------------------------------------

    def list_tasks(self, limit: int) -> list[Task]:
        with Session(self._engine) as session:
            query = select(Task).order_by(col(Task.size).desc()).limit(limit or 100)
            return list(session.exec(query))

    def get_task(self, task_id: str) -> Task:
        with Session(self._engine) as session:
            task = session.get(Task, task_id)
        if task is None:
            raise ControlError("not_found", f"no task {task_id!r}")
        return task

    def list_models(self, task_id: str = "") -> list[ModelVersion]:
        with Session(self._engine) as session:
            query = select(ModelVersion).order_by(col(ModelVersion.created_at).desc())
            if task_id:
                query = query.where(ModelVersion.task_id == task_id)
            return list(session.exec(query))

    def list_rollouts(self) -> list[Rollout]:
        with Session(self._engine) as session:
            return list(session.exec(select(Rollout).order_by(Rollout.task_id)))

    def list_jobs(self, task_id: str = "") -> list[TrainingJob]:
        with Session(self._engine) as session:
            query = select(TrainingJob).order_by(col(TrainingJob.created_at).desc())
            if task_id:
                query = query.where(TrainingJob.task_id == task_id)
            return list(session.exec(query))

    def get_job(self, job_id: str) -> TrainingJob:
        with Session(self._engine) as session:
            job = session.get(TrainingJob, job_id)
        if job is None:
            raise ControlError("not_found", f"no training job {job_id!r}")
        return job

    # --- training jobs --------------------------------------------------------------

    def _controller(self) -> TrainingController:
        if self._jobs is None:
            raise ControlError("invalid", "this control plane does not run training jobs")
        return self._jobs

    async def start_job(self, task_id: str, base_model: str = "") -> TrainingJob:
        """Queues a training job for `task_id` now, on `base_model` or the trainer's choice."""
        with _job_errors():
            return await self._controller().start_job(task_id.strip(), base_model.strip())

    async def cancel_job(self, job_id: str) -> TrainingJob:
        with _job_errors():
            return await self._controller().cancel_job(job_id.strip())

    # --- API keys -------------------------------------------------------------------

    def create_api_key(self, tenant_id: str, name: str, by: str) -> api_keys.CreatedKey:
        """A new key of `tenant_id`; the plain key is in the result and nowhere else."""
        with _key_errors():
            return api_keys.create_key(self._engine, tenant_id.strip(), name.strip(), by)

    def list_api_keys(self, tenant_id: str = "") -> list[ApiKey]:
        """Every key (of `tenant_id` when set), revoked ones too; records only, no keys."""
        return api_keys.list_keys(self._engine, tenant_id.strip())

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revokes a key; the gateways refuse it once their key cache expires."""
        with _key_errors():
            return api_keys.revoke_key(self._engine, key_id.strip())

    # --- changes (`interns.common.routes`, shared with the deploy controller) -------

    async def promote(
        self, task_id: str, model: str, version: int, mode: str, share: float, by: str, reason: str
    ) -> Rollout:
        with _route_errors():
            return await self._routes.promote(task_id, model, version, mode, share, by, reason)

    async def rollback(self, task_id: str, by: str, reason: str) -> Rollout:
        """Returns the task to the route it had before its last change (the expert if none)."""
        with _route_errors():
            return await self._routes.rollback(task_id, by, reason)

    async def pin(self, task_id: str, pinned: bool, by: str, reason: str) -> Rollout:
        with _route_errors():
            return await self._routes.pin(task_id, pinned, by, reason)
