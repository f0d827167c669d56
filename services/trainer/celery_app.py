"""The Celery application of the training workers. Built by a function, never at import.

JSON is the only serializer accepted: nothing deserializes pickle. GPU jobs go to the
`gpu` queue (one job per GPU worker), small CPU jobs to `cpu`. A job is acknowledged only
when it ended, so the job of a worker that died is delivered again once the broker's
visibility timeout has passed; the pipeline makes running it twice safe.
"""

from __future__ import annotations

import platform

from celery import Celery


def make_celery(broker_url: str, visibility_timeout_s: float = 3600.0) -> Celery:
    app = Celery("interns-trainer", broker=broker_url, backend=broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": visibility_timeout_s},
        result_expires=7 * 24 * 3600,
    )

    @app.task(name="interns.trainer.describe_worker")
    def describe_worker() -> dict[str, str]:
        """What this worker runs on: the trainer asks before it places a job."""
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            torch_version = torch.__version__
        except ImportError:
            device, torch_version = "cpu", ""
        return {"host": platform.node(), "device": device, "torch": torch_version}

    return app
