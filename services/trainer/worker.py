"""Training worker entry point: a Celery worker of the trainer's application.

Consumes: Celery tasks from CELERY_BROKER_URL, queue TRAINER_WORKER_QUEUE (`cpu` or `gpu`),
one job at a time.
"""

from __future__ import annotations

import os

from interns.common.settings import load_settings
from interns.trainer.celery_app import make_celery
from interns.trainer.settings import TrainerSettings


def main() -> None:
    settings = load_settings(TrainerSettings)
    app = make_celery(settings.celery_broker_url)
    queue = os.environ.get("TRAINER_WORKER_QUEUE", "cpu")
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "--loglevel",
            settings.log_level.upper(),
            "--hostname",
            f"{queue}@%h",
        ]
    )


if __name__ == "__main__":
    main()
