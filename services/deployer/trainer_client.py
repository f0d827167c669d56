"""Asking the trainer for a new version of a task: `StartTrainingJob` on the control API
(TRAINER_ADDR). The trainer builds the job's data from the task's latest stored calls."""

from __future__ import annotations

from interns.api.v1 import control_pb2, control_pb2_grpc
from interns.common.logging import get_logger
from interns.common.settings import SecureSettings
from interns.common.tls import aio_channel

log = get_logger(__name__)


class TrainerClient:
    def __init__(self, address: str, security: SecureSettings | None = None):
        """`security`: TLS of the channel (GRPC_TLS*); none: plaintext."""
        self._channel = aio_channel(address, security or SecureSettings.model_construct())
        self._stub = control_pb2_grpc.ControlServiceStub(self._channel)

    async def request_training(self, task_id: str, reason: str) -> None:
        """Starts a training job for `task_id`; `reason` goes to the log (the job's own
        record says which base model was chosen and why)."""
        started = await self._stub.StartTrainingJob(
            control_pb2.StartTrainingJobRequest(task_id=task_id), timeout=10
        )
        log.info("training job started", task_id=task_id, job_id=started.job.job_id, why=reason)

    async def close(self) -> None:
        await self._channel.close()
