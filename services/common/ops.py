"""The ops HTTP endpoint of every service: `/healthz`, `/readyz` and `/metrics`.

`/healthz` answers while the process runs; `/readyz` answers 200 only when every
readiness check passes (for example: connected to Kafka, database reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Self

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

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


class _ServerWithoutSignals(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to the service: uvicorn's own
    `capture_signals` would replace the service's handlers while it serves and re-raise the
    signal once it stops (vLLM hit the same race: vllm-project/vllm#50916)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class UvicornRunner:
    """Runs an ASGI app on `host:port` inside the service's event loop, as an async context
    manager. On exit it stops taking connections and lets requests in flight finish within
    `grace_s` seconds (None: as long as they take)."""

    def __init__(
        self, app: ASGIApp, host: str, port: int, grace_s: float | None = None, **options: Any
    ):
        """`options`: more of uvicorn's settings (`uvicorn.Config`)."""
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=grace_s,
            **options,
        )
        self._server = _ServerWithoutSignals(config)
        self._task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        """The port bound (the one chosen by the system when 0 was asked for)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
            await asyncio.sleep(0.01)
        return self

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:
            # uvicorn logs why it could not start, then exits the process; the service
            # decides instead, and a SystemExit inside a task would escape the event loop.
            config = self._server.config
            raise OSError(f"cannot serve HTTP on {config.host}:{config.port}") from None
        if not self._server.started:
            raise OSError("uvicorn stopped before serving")

    async def __aexit__(self, *exc) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task


class OpsServer(UvicornRunner):
    """Runs the ops app on `host:port` inside the service's event loop."""

    def __init__(self, service: str, host: str, port: int, checks: dict[str, ReadinessCheck]):
        super().__init__(build_ops_app(service, checks), host, port)
