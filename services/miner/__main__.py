"""Miner service entry point.

Reads: new rows of the `traces` table, every MINER_INTERVAL_S seconds.
Produces: `interns.tasks.v1` (task discovered or changed) as tasks are mined.
Serves: health and metrics (MINER_OPS_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Counter

from interns.common.db import database_reachable, make_engine
from interns.common.lifecycle import wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.miner.settings import MinerSettings
from interns.miner.watermark import count_new_traces

log = get_logger(__name__)
TRACES_SEEN = Counter("interns_miner_traces_seen_total", "Traces read by the miner", ["service"])


async def mine_forever(engine, interval_s: float) -> None:
    since = None
    while True:
        try:
            new, since = await asyncio.to_thread(count_new_traces, engine, since)
            if new:
                TRACES_SEEN.labels("miner").inc(new)
                log.info("new traces", count=new)
        except Exception:
            log.exception("mining pass failed; retrying next interval")
        await asyncio.sleep(interval_s)


async def main() -> None:
    settings = load_settings(MinerSettings)
    configure_logging("miner", settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)

    checks = {"database": lambda: asyncio.to_thread(database_reachable, engine)}
    async with OpsServer("miner", settings.ops_host, settings.ops_port, checks):
        miner = asyncio.create_task(mine_forever(engine, settings.interval_s))
        signal_name = await wait_for_shutdown_signal()
        log.info("miner stopping", signal=signal_name)
        miner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await miner
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
