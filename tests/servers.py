"""In-process servers for the service tier: the real gateway and router code on port 0,
the router's expert being the replay expert's app, served over HTTP on a free port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from starlette.types import ASGIApp

from interns.api.v1 import gateway_pb2_grpc, router_pb2_grpc
from interns.common.events import TraceRecorded
from interns.common.grpc_server import GrpcServer
from interns.common.ops import UvicornRunner
from interns.expert.app import build_app
from interns.expert.replay import ReplayIndex, load_workload
from interns.expert.settings import ExpertSettings
from interns.gateway.calls import Admission, Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.gateway.limits import RateLimit, TenantRateLimiter
from interns.gateway.router_client import RemoteRouter
from interns.router.costs import Price
from interns.router.expert import ExpertClient
from interns.router.grpc_service import RouterServicer
from interns.router.interns import InternClient
from interns.router.routing import RoutingTable
from interns.router.serving import Router, RouterConfig


@dataclass
class RecordingPublisher:
    """Stands in for the Kafka trace producer in the service tier."""

    traces: list[TraceRecorded] = field(default_factory=list)

    def publish(self, trace: TraceRecorded) -> bool:
        self.traces.append(trace)
        return True


@asynccontextmanager
async def expert_serving(app: ASGIApp, max_attempts: int = 1) -> AsyncIterator[ExpertClient]:
    """An expert client of `app`, an OpenAI-compatible expert served on a free port."""
    async with UvicornRunner(app, "127.0.0.1", 0, grace_s=1) as server:
        client = ExpertClient(f"http://127.0.0.1:{server.port}/v1", max_attempts=max_attempts)
        try:
            yield client
        finally:
            await client.aclose()


@asynccontextmanager
async def replay_expert(workload: Path) -> AsyncIterator[ExpertClient]:
    """An expert client of the replay expert answering from `workload`."""
    index = ReplayIndex.from_records(load_workload(workload))
    app = build_app(index, ExpertSettings(workload=workload, latency_ms=0, model_name="replay"))
    async with expert_serving(app) as client:
        yield client


def make_router(
    expert: ExpertClient,
    table: RoutingTable | None = None,
    interns: InternClient | None = None,
    publish_shadow=None,
) -> Router:
    """The router's serving object, as a router service or an embedded router runs it."""
    table = table or RoutingTable()
    # A price table, so that the expert's calls cost something the tests can check.
    prices = {"default": Price(prompt_per_million=1000.0, completion_per_million=4000.0)}
    return Router(table, expert, RouterConfig("replay", prices=prices), interns, publish_shadow)


async def start_router(
    expert: ExpertClient,
    table: RoutingTable | None = None,
    interns: InternClient | None = None,
    publish_shadow=None,
) -> GrpcServer:
    table = table or RoutingTable()
    router = make_router(expert, table, interns, publish_shadow)
    server = GrpcServer("router", "127.0.0.1:0", ["interns.api.v1.RouterService"], grace=1)
    router_pb2_grpc.add_RouterServiceServicer_to_server(
        RouterServicer(router, table), server.server
    )
    return await server.__aenter__()


@dataclass
class MemoryAuthenticator:
    """Stands in for the database key store: API key -> tenant."""

    tenants: dict[str, str] = field(default_factory=dict)

    async def tenant_of(self, api_key: str) -> str | None:
        return self.tenants.get(api_key)


def bearer(api_key: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata that carries `api_key` the way clients send it."""
    return (("authorization", f"Bearer {api_key}"),)


def open_admission() -> Admission:
    """Admits every call as tenant "default", without a key, at any sane rate."""
    return Admission(
        MemoryAuthenticator(), TenantRateLimiter(RateLimit(10_000, 10_000)), require_api_key=False
    )


async def start_gateway(
    router_addr: str, publisher: RecordingPublisher, admission: Admission | None = None
) -> GrpcServer:
    channel = grpc.aio.insecure_channel(router_addr)
    router = RemoteRouter(router_pb2_grpc.RouterServiceStub(channel))
    gateway = Gateway(router, publisher, 10.0, admission or open_admission())
    server = GrpcServer("gateway", "127.0.0.1:0", ["interns.api.v1.GatewayService"], grace=1)
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(gateway), server.server)
    return await server.__aenter__()


@contextmanager
def control_api_in_thread(plane: Any) -> Iterator[str]:
    """The control API over `plane` (a ControlPlane) on a free port, served by its own
    event loop in a thread, so a synchronous client (the CLI) can call it; yields its
    address."""
    from interns.api.v1 import control_pb2_grpc
    from interns.trainer.grpc_service import ControlServicer

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    port = 0

    async def serve():
        nonlocal stop, port
        stop = asyncio.Event()
        server = GrpcServer("trainer", "127.0.0.1:0", ["interns.api.v1.ControlService"], grace=1)
        control_pb2_grpc.add_ControlServiceServicer_to_server(
            ControlServicer(plane, "ann"), server.server
        )
        async with server:
            port = server.port
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
