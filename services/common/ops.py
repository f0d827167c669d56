"""The ops HTTP endpoint of every service: `/healthz`, `/readyz` and `/metrics`.

`/healthz` answers while the process runs; `/readyz` answers 200 only when every
readiness check passes (for example: connected to Kafka, database reachable).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ReadinessCheck = Callable[[], bool | Awaitable[bool]]


def build_ops_app(service: str, checks: dict[str, ReadinessCheck]) -> Starlette:
    """The Starlette app of the ops endpoint for `service`."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"service": service, "status": "alive"})

    async def readyz(_: Request) -> Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                outcome = check()
                results[name] = bool(await outcome if inspect.isawaitable(outcome) else outcome)
            except Exception:  # a failing check means not ready, never a crash
                results[name] = False
        ready = all(results.values())
        return JSONResponse(
            {"service": service, "ready": ready, "checks": results},
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )


class OpsServer:
    """Runs the ops app on `host:port` inside the service's event loop."""

    def __init__(self, service: str, host: str, port: int, checks: dict[str, ReadinessCheck]):
        config = uvicorn.Config(
            build_ops_app(service, checks),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the service owns signals
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> OpsServer:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task
