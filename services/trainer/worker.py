"""Training worker entry point: a Celery worker of the trainer's application.

Consumes: Celery tasks from CELERY_BROKER_URL, queue TRAINER_WORKER_QUEUE (`cpu` or `gpu`),
one job at a time (`interns.trainer.train_intern`).
Writes: `training_jobs` (progress), `model_versions`, the Triton model repository
(TRAINER_MODEL_REPOSITORY), per-job folders (TRAINER_WORKDIR).
Produces: `interns.training.v1` (progress), `interns.models.v1` (a version registered).
"""

from __future__ import annotations

import atexit
import functools
import sys
import threading

from celery.signals import worker_shutting_down

from interns.common.db import make_engine
from interns.common.settings import load_settings
from interns.common.tls import kafka_client_options
from interns.trainer.catalog import CatalogError, load_catalog
from interns.trainer.celery_app import make_celery
from interns.trainer.pipeline import JobContext, real_ml_core
from interns.trainer.publisher import EventPublisher
from interns.trainer.settings import TrainerSettings
from interns.trainer.tasks import register_tasks


def job_context(settings: TrainerSettings, stopping: threading.Event) -> JobContext:
    publisher = EventPublisher(
        settings.kafka_bootstrap_servers, kafka_options=kafka_client_options(settings)
    ).start()
    atexit.register(publisher.close)
    return JobContext(
        engine=make_engine(settings.database_url),
        settings=settings,
        catalog=load_catalog(settings.catalog),
        core=real_ml_core(),
        publish=publisher.publish,
        publish_and_wait=publisher.publish_and_wait,
        lease_s=settings.job_lease_s,
        stopping=stopping,
    )


def main() -> None:
    settings = load_settings(TrainerSettings)
    try:
        load_catalog(settings.catalog)  # a bad catalog stops the worker now, not at a job
    except CatalogError as error:
        sys.exit(f"invalid configuration: TRAINER_CATALOG: {error}")
    app = make_celery(settings.celery_broker_url, settings.celery_visibility_timeout_s)
    # A warm shutdown (SIGTERM) waits for the running task: make training checkpoint and
    # hand its job back instead of running to the end.
    stopping = threading.Event()
    worker_shutting_down.connect(lambda **_: stopping.set(), weak=False)
    register_tasks(
        app,
        functools.cache(lambda: job_context(settings, stopping)),
        busy_retry_s=settings.job_lease_s,
    )
    queue = settings.worker_queue
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
