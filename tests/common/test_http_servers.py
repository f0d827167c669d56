"""The HTTP servers of the services (ops endpoint, the gateway's OpenAI API) run inside the
service's event loop: they leave the signals to the service, report a taken port, and
finish the requests in flight when they stop."""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from interns.common.ops import OpsServer, UvicornRunner

ARRIVED = asyncio.Event()


async def slow(_: Request) -> PlainTextResponse:
    ARRIVED.set()
    await asyncio.sleep(0.3)
    return PlainTextResponse("done")


SLOW_APP = Starlette(routes=[Route("/slow", slow)])


async def test_the_ops_server_answers_health_and_readiness_on_the_port_it_got():
    checks = {"router": lambda: True, "database": lambda: False}
    ops = OpsServer("gateway", "127.0.0.1", 0, checks)
    async with ops, httpx.AsyncClient() as http:
        alive = await http.get(f"http://127.0.0.1:{ops.port}/healthz")
        ready = await http.get(f"http://127.0.0.1:{ops.port}/readyz")
    assert alive.json() == {"service": "gateway", "status": "alive"}
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"router": True, "database": False}


async def test_serving_leaves_the_signal_handlers_to_the_service():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    async with UvicornRunner(SLOW_APP, "127.0.0.1", 0):
        during = {sig: signal.getsignal(sig) for sig in before}
    assert during == before
    assert {sig: signal.getsignal(sig) for sig in before} == before


async def test_a_taken_port_is_an_error_naming_the_address():
    async with UvicornRunner(SLOW_APP, "127.0.0.1", 0) as first:
        with pytest.raises(OSError, match=f"127.0.0.1:{first.port}"):
            async with UvicornRunner(SLOW_APP, "127.0.0.1", first.port):
                pass


async def test_stopping_finishes_the_requests_in_flight_and_refuses_new_ones():
    runner = await UvicornRunner(SLOW_APP, "127.0.0.1", 0, grace_s=5).__aenter__()
    port = runner.port
    url = f"http://127.0.0.1:{port}/slow"
    async with httpx.AsyncClient() as in_flight_client, httpx.AsyncClient() as late_client:
        ARRIVED.clear()
        in_flight = asyncio.ensure_future(in_flight_client.get(url))
        # Waits for the request to reach the app, not for a fixed time: the machine is shared.
        await asyncio.wait_for(ARRIVED.wait(), timeout=10)
        stopping = asyncio.create_task(runner.__aexit__(None, None, None))
        # Until the listening socket is closed a late request may still be accepted.
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    pass
            except OSError:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(httpx.ConnectError):
            await late_client.get(url)
        assert (await in_flight).text == "done"
        await stopping
