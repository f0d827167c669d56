"""The control API's gRPC transport: translates ControlService calls to ControlPlane calls."""

from __future__ import annotations

import asyncio
import functools

import grpc

from interns.api.v1 import control_pb2, control_pb2_grpc
from interns.common import db
from interns.trainer.control import ControlError, ControlPlane

STATUS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
}


def _seconds(moment) -> int:
    return int(moment.timestamp()) if moment else 0


def task_message(task: db.Task) -> control_pb2.Task:
    return control_pb2.Task(
        task_id=task.task_id,
        label=task.label,
        size=task.size,
        traffic_share=task.traffic_share,
        output_kind=task.output_kind,
        replaceability=task.replaceability,
        first_seen=_seconds(task.first_seen),
        updated=_seconds(task.updated_at),
    )


def model_message(model: db.ModelVersion) -> control_pb2.ModelVersion:
    return control_pb2.ModelVersion(
        model=model.model,
        version=model.version,
        task_id=model.task_id,
        base_model=model.base_model,
        status=model.status,
        scores=model.scores,
        created=_seconds(model.created_at),
    )


def rollout_message(rollout: db.Rollout) -> control_pb2.Rollout:
    return control_pb2.Rollout(
        task_id=rollout.task_id,
        target=rollout.target,
        model_version=rollout.model_version,
        mode=rollout.mode,
        canary_share=rollout.canary_share,
        pinned=rollout.pinned,
        changed_by=rollout.changed_by,
        reason=rollout.reason,
        updated=_seconds(rollout.updated_at),
    )


def job_message(job: db.TrainingJob) -> control_pb2.TrainingJob:
    return control_pb2.TrainingJob(
        job_id=job.job_id,
        task_id=job.task_id,
        base_model=job.base_model,
        status=job.status,
        step=job.step,
        total_steps=job.total_steps,
        loss=job.loss or 0.0,
        eta_seconds=job.eta_seconds or 0.0,
        error=job.error,
        device=job.device,
        selection=job.selection,
        attempts=job.attempts,
        resumed_at_step=job.resumed_at_step,
        model=job.model,
        model_version=job.model_version,
        cancel_requested=job.cancel_requested,
        created=_seconds(job.created_at),
        updated=_seconds(job.updated_at),
    )


def api_key_message(key: db.ApiKey) -> control_pb2.ApiKey:
    return control_pb2.ApiKey(
        key_id=key.key_id,
        tenant_id=key.tenant_id,
        name=key.name,
        prefix=key.prefix,
        created=_seconds(key.created_at),
        revoked=_seconds(key.revoked_at),
        created_by=key.created_by,
    )


def _control_errors(method):
    """Turns ControlError into the matching gRPC status with its message."""

    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except ControlError as error:
            await context.abort(STATUS[error.kind], str(error))

    return wrapper


def _required(value: str, field: str) -> None:
    if not value:
        raise ControlError("invalid", f"{field}: is required")


class ControlServicer(control_pb2_grpc.ControlServiceServicer):
    def __init__(self, plane: ControlPlane, operator: str):
        self._plane = plane
        self._by = f"operator:{operator}"

    @_control_errors
    async def ListTasks(self, request, context):
        tasks = await asyncio.to_thread(self._plane.list_tasks, request.limit)
        return control_pb2.ListTasksResponse(tasks=[task_message(t) for t in tasks])

    @_control_errors
    async def GetTask(self, request, context):
        _required(request.task_id, "task_id")
        task = await asyncio.to_thread(self._plane.get_task, request.task_id)
        return control_pb2.GetTaskResponse(task=task_message(task))

    @_control_errors
    async def ListModels(self, request, context):
        models = await asyncio.to_thread(self._plane.list_models, request.task_id)
        return control_pb2.ListModelsResponse(models=[model_message(m) for m in models])

    @_control_errors
    async def ListRollouts(self, request, context):
        rollouts = await asyncio.to_thread(self._plane.list_rollouts)
        return control_pb2.ListRolloutsResponse(rollouts=[rollout_message(r) for r in rollouts])

    @_control_errors
    async def ListTrainingJobs(self, request, context):
        jobs = await asyncio.to_thread(self._plane.list_jobs, request.task_id)
        return control_pb2.ListTrainingJobsResponse(jobs=[job_message(j) for j in jobs])

    @_control_errors
    async def GetTrainingJob(self, request, context):
        _required(request.job_id, "job_id")
        job = await asyncio.to_thread(self._plane.get_job, request.job_id)
        return control_pb2.GetTrainingJobResponse(job=job_message(job))

    @_control_errors
    async def StartTrainingJob(self, request, context):
        _required(request.task_id, "task_id")
        job = await self._plane.start_job(request.task_id, request.base_model)
        return control_pb2.StartTrainingJobResponse(job=job_message(job))

    @_control_errors
    async def CancelTrainingJob(self, request, context):
        _required(request.job_id, "job_id")
        job = await self._plane.cancel_job(request.job_id)
        return control_pb2.CancelTrainingJobResponse(job=job_message(job))

    @_control_errors
    async def PromoteModel(self, request, context):
        _required(request.task_id, "task_id")
        _required(request.model, "model")
        rollout = await self._plane.promote(
            request.task_id,
            request.model,
            request.model_version,
            request.mode,
            request.canary_share,
            self._by,
            request.reason or "promoted by hand",
        )
        return control_pb2.PromoteModelResponse(rollout=rollout_message(rollout))

    @_control_errors
    async def RollbackTask(self, request, context):
        _required(request.task_id, "task_id")
        rollout = await self._plane.rollback(
            request.task_id, self._by, request.reason or "rolled back by hand"
        )
        return control_pb2.RollbackTaskResponse(rollout=rollout_message(rollout))

    @_control_errors
    async def PinTaskToExpert(self, request, context):
        _required(request.task_id, "task_id")
        reason = request.reason or ("pinned by hand" if request.pinned else "unpinned by hand")
        rollout = await self._plane.pin(request.task_id, request.pinned, self._by, reason)
        return control_pb2.PinTaskToExpertResponse(rollout=rollout_message(rollout))

    @_control_errors
    async def CreateApiKey(self, request, context):
        created = await asyncio.to_thread(
            self._plane.create_api_key, request.tenant_id, request.name, self._by
        )
        return control_pb2.CreateApiKeyResponse(
            api_key=api_key_message(created.record), key=created.key
        )

    @_control_errors
    async def ListApiKeys(self, request, context):
        keys = await asyncio.to_thread(self._plane.list_api_keys, request.tenant_id)
        return control_pb2.ListApiKeysResponse(api_keys=[api_key_message(k) for k in keys])

    @_control_errors
    async def RevokeApiKey(self, request, context):
        revoked = await asyncio.to_thread(self._plane.revoke_api_key, request.key_id)
        return control_pb2.RevokeApiKeyResponse(api_key=api_key_message(revoked))
