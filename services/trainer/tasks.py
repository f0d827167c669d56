"""The Celery transport of training jobs: named tasks with JSON arguments and results.

`interns.trainer.train_intern(job_id)` runs `pipeline.run_job`; a job that another live
worker holds is retried later rather than dropped, and a job interrupted by this worker's
shutdown goes back to the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.exceptions import Reject

from interns.trainer.pipeline import JobBusy, JobContext, JobInterrupted, run_job

TRAIN_INTERN = "interns.trainer.train_intern"


def register_tasks(app: Celery, context: Callable[[], JobContext], busy_retry_s: float) -> None:
    """Adds the training tasks to `app`; `context` gives the job context (built once, in the
    worker process, on first use)."""

    @app.task(name=TRAIN_INTERN, bind=True, max_retries=None)
    def train_intern(self, job_id: str) -> dict[str, Any]:
        """Trains, evaluates, exports and registers the intern of training job `job_id`."""
        try:
            return run_job(job_id, context())
        except JobBusy as busy:
            raise self.retry(exc=busy, countdown=busy_retry_s) from None
        except JobInterrupted as interrupted:
            raise Reject(interrupted, requeue=True) from None


def submit_job(app: Celery, job_id: str, queue: str) -> None:
    """Queues training job `job_id` on `queue` (cpu or gpu); the Celery task id is the job
    id, so a job sent twice is one job."""
    app.send_task(TRAIN_INTERN, args=[job_id], queue=queue, task_id=job_id)
