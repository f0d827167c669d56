"""Trace-collector service entry point.

Consumes: `interns.traces.v1` (consumer group COLLECTOR_GROUP_ID; instances share partitions).
Produces: rows in the `traces` table; `interns.deadletter.v1` for invalid records.
Serves: health and metrics (COLLECTOR_OPS_PORT).
"""

from __future__ import annotations

import asyncio
import gc

from interns.common.db import database_reachable, make_engine
from interns.common.lifecycle import wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import consumer_lag_watched
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.common.tls import kafka_broker
from interns.common.tracing import configure_tracing
from interns.trace_collector.handlers import register
from interns.trace_collector.settings import CollectorSettings

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(CollectorSettings)
    configure_logging("trace-collector", settings.log_level, settings.log_format)
    configure_tracing("trace-collector")
    engine = make_engine(settings.database_url)
    broker = kafka_broker(settings, "interns-trace-collector")
    register(broker, engine, settings)
    # A batch makes hundreds of thousands of short-lived objects (parsed traces): with
    # the default thresholds the cyclic collector runs every 700 allocations and
    # re-scans the objects that outlive it, about half the time per trace at a batch of
    # 500. The traces hold no reference cycles; what start-up made is frozen out of it.
    gc.freeze()
    gc.set_threshold(settings.gc_threshold, 50, 100)

    checks = {
        "kafka": lambda: broker.ping(timeout=2.0),
        "database": lambda: asyncio.to_thread(database_reachable, engine),
    }
    async with (
        broker,
        OpsServer("trace-collector", settings.ops_host, settings.ops_port, checks),
        consumer_lag_watched("trace-collector", broker),
    ):
        await broker.start()
        log.info("trace-collector consuming", group=settings.group_id)
        signal_name = await wait_for_shutdown_signal()
        log.info("trace-collector stopping", signal=signal_name)
    # Leaving the broker context stops the consumer after its in-flight batch is acked.
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
