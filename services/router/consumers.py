"""The router's Kafka handlers: route changes and task matchers into the routing table.

Every replica reads both topics whole (no consumer group). A record that is not its
topic's event goes to the dead-letter topic (`interns.common.dead_letters`); each replica
that reads it sends its own letter, told apart by `consumer` and the source offset.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from interns.common.dead_letters import dead_letter_router
from interns.common.events import RolloutChanged, TaskChanged
from interns.router.routing import RoutingTable


def subscribe(broker: KafkaBroker, table: RoutingTable) -> None:
    """Subscribes the routing table to `interns.rollouts.v1` and `interns.tasks.v1`."""
    router = dead_letter_router(broker, "router")

    @router.subscriber(RolloutChanged.topic, auto_offset_reset="earliest")
    async def on_rollout(change: RolloutChanged) -> None:
        table.apply(change)

    @router.subscriber(TaskChanged.topic, auto_offset_reset="earliest")
    async def on_task(change: TaskChanged) -> None:
        table.apply_task(change)

    broker.include_router(router)
