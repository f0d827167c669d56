"""In-process servers for the service tier: the real gateway and router code on port 0,
the router's expert being the replay expert's app over an in-memory HTTP transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from interns.api.v1 import gateway_pb2_grpc, router_pb2_grpc
from interns.common.events import TraceRecorded
from interns.common.grpc_server import GrpcServer
from interns.expert.app import build_app
from interns.expert.replay import ReplayIndex, load_workload
from interns.expert.settings import ExpertSettings
from interns.gateway.calls import Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.router.expert import ExpertClient
from interns.router.grpc_service import RouterServicer
from interns.router.routing import RoutingTable
from interns.router.serving import Router


@dataclass
class RecordingPublisher:
    """Stands in for the Kafka trace producer in the service tier."""

    traces: list[TraceRecorded] = field(default_factory=list)

    def publish(self, trace: TraceRecorded) -> bool:
        self.traces.append(trace)
        return True


def expert_http(workload: Path) -> httpx.AsyncClient:
    index = ReplayIndex.from_records(load_workload(workload))
    app = build_app(index, ExpertSettings(workload=workload, latency_ms=0, model_name="replay"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://expert/v1/")


async def start_router(expert: ExpertClient, table: RoutingTable | None = None) -> GrpcServer:
    table = table or RoutingTable()
    server = GrpcServer("router", "127.0.0.1:0", ["interns.api.v1.RouterService"], grace=1)
    router_pb2_grpc.add_RouterServiceServicer_to_server(
        RouterServicer(Router(table, expert, "replay"), table), server.server
    )
    return await server.__aenter__()


async def start_gateway(router_addr: str, publisher: RecordingPublisher) -> GrpcServer:
    channel = grpc.aio.insecure_channel(router_addr)
    gateway = Gateway(router_pb2_grpc.RouterServiceStub(channel), publisher, 10.0, "default")
    server = GrpcServer("gateway", "127.0.0.1:0", ["interns.api.v1.GatewayService"], grace=1)
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(gateway), server.server)
    return await server.__aenter__()
