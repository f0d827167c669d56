"""Deploy controller entry point.

Consumes: `interns.models.v1` (versions that passed their offline evaluation),
`interns.shadow.v1` (live comparisons with the expert: shadow and sampled checks) and
`interns.rollouts.v1` (operators' route changes).
Produces: `interns.rollouts.v1` (shadow -> canary -> full, rollbacks; each with an audit
row in `route_changes`, changed_by "controller").
Calls: Triton's model control API (TRITON_GRPC_ADDR: load, warm, unload versions); the
trainer's control API (TRAINER_ADDR: a new version of a served task that drifted).
Serves: health and metrics (DEPLOYER_OPS_PORT). One replica acts at a time (a lease in
the database, `leases`); the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from interns.common.db import database_reachable, make_engine
from interns.common.events import RolloutChanged
from interns.common.lifecycle import run, wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import EVENTS_PUBLISHED, consumer_lag_watched
from interns.common.ops import OpsServer
from interns.common.routes import RouteChanger
from interns.common.settings import load_settings
from interns.common.tls import kafka_broker, triton_client_options
from interns.common.tracing import configure_tracing
from interns.deployer.lease import LeaseKeeper
from interns.deployer.rollouts import Deployer, control_loop
from interns.deployer.settings import DeployerSettings
from interns.deployer.trainer_client import TrainerClient
from interns.deployer.transport import subscribe
from interns.deployer.triton import TritonModels
from interns.deployer.warmup import warmup_bodies

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(DeployerSettings)
    configure_logging("deployer", settings.log_level, settings.log_format)
    configure_tracing("deployer")
    engine = make_engine(settings.database_url)
    broker = kafka_broker(settings, "interns-deployer")
    rollouts = broker.publisher(RolloutChanged.topic, schema=RolloutChanged)

    async def publish_rollout(change: RolloutChanged) -> None:
        await rollouts.publish(change.model_dump(mode="json"), key=change.key())
        EVENTS_PUBLISHED.labels("deployer", RolloutChanged.topic).inc()

    models = TritonModels(
        settings.triton_grpc_addr,
        settings.max_batch_size,
        settings.instances,
        triton_client_options(settings),
        settings.triton_control_key.get_secret_value(),
    )
    trainer = TrainerClient(settings.trainer_addr, settings)
    deployer = Deployer(
        engine,
        RouteChanger(engine, publish_rollout),
        models,
        settings,
        functools.partial(warmup_bodies, engine),
        request_training=trainer.request_training,
    )
    lease = LeaseKeeper(engine, "deployer", settings.instance_id, settings.lease_ttl_s)
    subscribe(broker, deployer, lease)
    checks = {
        "kafka": lambda: broker.ping(timeout=2.0),
        "database": lambda: asyncio.to_thread(database_reachable, engine),
    }
    async with (
        broker,
        OpsServer("deployer", settings.ops_host, settings.ops_port, checks),
        consumer_lag_watched("deployer", broker),
    ):
        await broker.start()
        loop = asyncio.create_task(control_loop(deployer, lease, settings.tick_s))
        log.info("deployer running", instance=settings.instance_id)
        signal_name = await wait_for_shutdown_signal()
        log.info("deployer stopping", signal=signal_name)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        if lease.held:
            await asyncio.to_thread(lease.release)
    await models.close()
    await trainer.close()
    engine.dispose()


if __name__ == "__main__":
    run(main())
