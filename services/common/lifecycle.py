"""Process lifecycle: run a service's main coroutine; wait for SIGTERM or SIGINT, then let
the caller shut down gracefully."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs `main` to completion on uvloop when it is installed (less CPU per call for the
    serving path), else on asyncio's own event loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def freeze_startup_objects() -> None:
    """Moves every object made during start-up (modules, stubs, settings, tables) out of the
    garbage collector's reach: full collections under load then scan only what calls make."""
    gc.collect()
    gc.freeze()


# Net new container objects that start a collection of the youngest generation (CPython's
# default: 700). A serving process makes and frees thousands per call; at 700 the gateway
# collected several hundred times a second, about 11 us per call and pauses of up to 7 ms,
# for objects that reference counting frees anyway. Cyclic garbage still triggers a
# collection once this many objects pile up.
SERVING_GC_THRESHOLD = 20_000


def collect_garbage_less_often() -> None:
    """Raises the youngest generation's threshold to SERVING_GC_THRESHOLD (for processes on
    a per-call serving path; measured on the gateway: 9% less CPU per call)."""
    gc.set_threshold(SERVING_GC_THRESHOLD, *gc.get_threshold()[1:])


async def wait_for_shutdown_signal() -> str:
    """Returns the name of the first SIGTERM or SIGINT received."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: received.done() or received.set_result(s.name))
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
