"""Trainer service entry point (the control plane).

Consumes: `interns.tasks.v1` (tasks that may deserve an intern: the training policy
decides, `interns.trainer.controller` queues the job).
Produces: `interns.rollouts.v1` (route changes), `interns.training.v1` (jobs queued or
cancelled; the workers publish their progress).
Serves: `ControlService` over gRPC (TRAINER_PORT); health and metrics (TRAINER_OPS_PORT).
Uses: the Celery workers (CELERY_BROKER_URL, queues cpu and gpu) for training jobs.
"""

from __future__ import annotations

import asyncio
import functools
import sys

from interns.api.v1 import control_pb2, control_pb2_grpc
from interns.common.db import database_reachable, make_engine
from interns.common.events import RolloutChanged, TrainingJobProgress
from interns.common.grpc_server import GrpcServer
from interns.common.lifecycle import wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import EVENTS_PUBLISHED, consumer_lag_watched, record_training_progress
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.common.tls import kafka_broker, server_credentials
from interns.common.tracing import configure_tracing
from interns.trainer.catalog import CatalogError, load_catalog
from interns.trainer.celery_app import make_celery
from interns.trainer.consumers import subscribe
from interns.trainer.control import ControlPlane
from interns.trainer.controller import TrainingController
from interns.trainer.grpc_service import ControlServicer
from interns.trainer.settings import TrainerSettings
from interns.trainer.tasks import submit_job

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(TrainerSettings)
    configure_logging("trainer", settings.log_level, settings.log_format)
    configure_tracing("trainer")
    try:
        catalog = load_catalog(settings.catalog)
    except CatalogError as error:
        sys.exit(f"invalid configuration: TRAINER_CATALOG: {error}")
    engine = make_engine(settings.database_url)
    celery = make_celery(settings.celery_broker_url, settings.celery_visibility_timeout_s)
    broker = kafka_broker(settings, "interns-trainer")
    rollouts = broker.publisher(RolloutChanged.topic, schema=RolloutChanged)
    progress = broker.publisher(TrainingJobProgress.topic, schema=TrainingJobProgress)

    async def publish_progress(event: TrainingJobProgress) -> None:
        await progress.publish(event.model_dump(mode="json"), key=event.key())
        EVENTS_PUBLISHED.labels("trainer", TrainingJobProgress.topic).inc()
        record_training_progress(
            "trainer", event.task_id, event.status, event.step, event.total_steps
        )

    jobs = TrainingController(
        engine, settings, catalog, functools.partial(submit_job, celery), publish_progress
    )

    subscribe(broker, jobs)

    async def publish_rollout(change: RolloutChanged) -> None:
        await rollouts.publish(change.model_dump(mode="json"), key=change.key())
        EVENTS_PUBLISHED.labels("trainer", RolloutChanged.topic).inc()

    plane = ControlPlane(engine, publish_rollout, jobs)
    grpc_server = GrpcServer(
        "trainer",
        f"{settings.host}:{settings.port}",
        [control_pb2.DESCRIPTOR.services_by_name["ControlService"].full_name],
        credentials=server_credentials(settings),
    )
    control_pb2_grpc.add_ControlServiceServicer_to_server(
        ControlServicer(plane, settings.operator), grpc_server.server
    )

    checks = {
        "kafka": lambda: broker.ping(timeout=2.0),
        "database": lambda: asyncio.to_thread(database_reachable, engine),
    }
    async with (
        broker,
        OpsServer("trainer", settings.ops_host, settings.ops_port, checks),
        consumer_lag_watched("trainer", broker),
    ):
        await broker.start()
        try:
            resent = await asyncio.to_thread(jobs.resubmit_unfinished)
            if resent:
                log.info("unfinished training jobs sent again", jobs=resent)
        except Exception as error:  # the control API serves without the Celery broker
            log.warning("unfinished training jobs not sent again", error=repr(error))
        async with grpc_server:
            log.info("trainer serving the control API", port=grpc_server.port)
            signal_name = await wait_for_shutdown_signal()
            log.info("trainer stopping", signal=signal_name)
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
