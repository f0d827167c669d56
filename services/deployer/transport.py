"""Kafka handlers of the deploy controller: each event becomes a plain call.

Every replica reads the three topics whole, without a consumer group; only the replica
holding the lease (`interns.deployer.lease`) acts on a registered version. The model
versions' status makes a redelivered or re-read event harmless.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from interns.common.dead_letters import dead_letter_router
from interns.common.events import ModelRegistered, RolloutChanged, ShadowCompared
from interns.deployer.lease import LeaseKeeper
from interns.deployer.rollouts import Deployer


def subscribe(broker: KafkaBroker, deployer: Deployer, lease: LeaseKeeper) -> None:
    router = dead_letter_router(broker, "deployer")

    @router.subscriber(ModelRegistered.topic, auto_offset_reset="earliest")
    async def on_model(event: ModelRegistered) -> None:
        if lease.held:
            await deployer.on_registered(event)

    @router.subscriber(ShadowCompared.topic, auto_offset_reset="latest")
    async def on_comparison(event: ShadowCompared) -> None:
        deployer.on_comparison(event)

    @router.subscriber(RolloutChanged.topic, auto_offset_reset="latest")
    async def on_route(event: RolloutChanged) -> None:
        deployer.on_route(event)

    broker.include_router(router)
