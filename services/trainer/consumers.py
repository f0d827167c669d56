"""The trainer's Kafka handler: task events to the training controller, which decides
whether a task gets a job. A record that is not a `TaskChanged` goes to the dead-letter
topic (`interns.common.dead_letters`) and the group moves past it."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from interns.common.dead_letters import dead_letter_router
from interns.common.events import TaskChanged
from interns.trainer.controller import TrainingController


def subscribe(broker: KafkaBroker, jobs: TrainingController) -> None:
    """Subscribes `jobs` to `interns.tasks.v1` in the trainer's consumer group."""
    router = dead_letter_router(broker, "trainer")

    @router.subscriber(TaskChanged.topic, group_id="interns-trainer", auto_offset_reset="earliest")
    async def on_task(change: TaskChanged) -> None:
        await jobs.on_task_changed(change)

    broker.include_router(router)
