"""Miner service entry point.

Reads: new rows of the `traces` table, every MINER_INTERVAL_S seconds (after a first full
pass at start), and groups them into tasks by structural signature, then splits the
signatures that hold several tasks by embedding clusters (MINER_SUBCLUSTERS).
Writes: the `tasks` table (statistics, splits and merges, the sub-tasks' matchers).
Produces: `interns.tasks.v1` (a task discovered, its statistics updated, split, merged).
Serves: health and metrics (MINER_OPS_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from interns.common.db import database_reachable, make_engine
from interns.common.events import TaskChanged
from interns.common.lifecycle import wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import EVENTS_PUBLISHED, TRACES_MINED
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.common.tls import kafka_broker
from interns.common.tracing import configure_tracing
from interns.miner.mining import (
    MiningState,
    TaskChange,
    matcher_of,
    mine_new_traces,
    restore_tasks,
    upsert_tasks,
)
from interns.miner.settings import MinerSettings
from interns.miner.subclusters import minilm_embedder

log = get_logger(__name__)


def task_events(
    state: MiningState,
    changed: set[str],
    discovered: set[str],
    changes: Sequence[TaskChange] = (),
) -> list[TaskChanged]:
    """One event per task that got new traces or was split or merged: a split or merge
    names the related tasks; a split signature's task carries its sub-tasks' matcher."""
    recorded = {change.task_id: change for change in changes}
    events = []
    for task_id in sorted(changed | discovered | set(recorded)):
        task = state.tasks[task_id]
        change = recorded.get(task_id)
        kind = change.change if change else "updated"
        if task_id in discovered:
            kind = "discovered"
        events.append(
            TaskChanged(
                task_id=task_id,
                change=kind,
                label=task.label,
                signature=task.signature,
                size=task.size,
                traffic_share=task.traffic_share(state.total),
                output_kind=task.output_kind,
                consistency=task.consistency,
                replaceability=task.replaceability(state.total),
                expert_cost_usd=task.expert_cost_usd,
                related_task_ids=list(change.related_task_ids if change else task.related_task_ids),
                parent_task_id=task.parent_task_id,
                matcher=matcher_of(state, task_id),
            )
        )
    return events


async def mine_forever(
    engine,
    interval_s: float,
    publish: Callable[[TaskChanged], Awaitable[None]],
    state: MiningState,
) -> None:
    await asyncio.to_thread(restore_tasks, engine, state)
    while True:
        try:
            before = state.total
            changed = await asyncio.to_thread(mine_new_traces, engine, state)
            if changed:
                TRACES_MINED.labels("miner").inc(state.total - before)
                discovered = await asyncio.to_thread(upsert_tasks, engine, state)
                changes = state.take_changes()
                for event in task_events(state, changed, discovered, changes):
                    await publish(event)
                log.info(
                    "tasks mined",
                    traces=state.total - before,
                    changed=len(changed),
                    discovered=len(discovered),
                    splits_and_merges=len(changes),
                    tasks=len(state.tasks),
                    embedded=state.embedded,
                )
        except Exception:
            log.exception("mining pass failed; retrying next interval")
        await asyncio.sleep(interval_s)


async def main() -> None:
    settings = load_settings(MinerSettings)
    configure_logging("miner", settings.log_level, settings.log_format)
    configure_tracing("miner")
    engine = make_engine(settings.database_url)
    broker = kafka_broker(settings, "interns-miner")
    tasks_topic = broker.publisher(TaskChanged.topic, schema=TaskChanged)

    async def publish_task(change: TaskChanged) -> None:
        await tasks_topic.publish(change.model_dump(mode="json"), key=change.key())
        EVENTS_PUBLISHED.labels("miner", TaskChanged.topic).inc()

    checks = {
        "kafka": lambda: broker.ping(timeout=2.0),
        "database": lambda: asyncio.to_thread(database_reachable, engine),
    }
    async with broker, OpsServer("miner", settings.ops_host, settings.ops_port, checks):
        await broker.start()
        state = MiningState(
            embed=minilm_embedder() if settings.subclusters else None,
            sample_size=settings.sample_size,
        )
        miner = asyncio.create_task(mine_forever(engine, settings.interval_s, publish_task, state))
        signal_name = await wait_for_shutdown_signal()
        log.info("miner stopping", signal=signal_name)
        miner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await miner
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
