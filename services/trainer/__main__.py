"""Trainer service entry point (the control plane).

Consumes: `interns.tasks.v1` (tasks that may deserve an intern).
Produces: `interns.rollouts.v1` (route changes), later training and model events.
Serves: `ControlService` over gRPC (TRAINER_PORT); health and metrics (TRAINER_OPS_PORT).
Uses: the Celery workers (CELERY_BROKER_URL) for training jobs.
"""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaBroker

from interns.api.v1 import control_pb2, control_pb2_grpc
from interns.common.db import database_reachable, make_engine
from interns.common.events import RolloutChanged, TaskChanged
from interns.common.grpc_server import GrpcServer
from interns.common.lifecycle import wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import EVENTS_PUBLISHED
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.trainer.control import ControlPlane
from interns.trainer.grpc_service import ControlServicer
from interns.trainer.settings import TrainerSettings

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(TrainerSettings)
    configure_logging("trainer", settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id="interns-trainer")
    rollouts = broker.publisher(RolloutChanged.topic, schema=RolloutChanged)

    @broker.subscriber(TaskChanged.topic, group_id="interns-trainer", auto_offset_reset="earliest")
    async def on_task(change: TaskChanged) -> None:
        log.info("task changed", task_id=change.task_id, change=change.change, size=change.size)

    async def publish_rollout(change: RolloutChanged) -> None:
        await rollouts.publish(change.model_dump(mode="json"), key=change.key())
        EVENTS_PUBLISHED.labels("trainer", RolloutChanged.topic).inc()

    plane = ControlPlane(engine, publish_rollout)
    grpc_server = GrpcServer(
        "trainer",
        f"{settings.host}:{settings.port}",
        [control_pb2.DESCRIPTOR.services_by_name["ControlService"].full_name],
    )
    control_pb2_grpc.add_ControlServiceServicer_to_server(
        ControlServicer(plane, settings.operator), grpc_server.server
    )

    checks = {
        "kafka": lambda: broker.ping(timeout=2.0),
        "database": lambda: asyncio.to_thread(database_reachable, engine),
    }
    async with broker, OpsServer("trainer", settings.ops_host, settings.ops_port, checks):
        await broker.start()
        async with grpc_server:
            log.info("trainer serving the control API", port=grpc_server.port)
            signal_name = await wait_for_shutdown_signal()
            log.info("trainer stopping", signal=signal_name)
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
