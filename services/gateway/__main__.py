"""Gateway service entry point.

Serves: `GatewayService` over gRPC (GATEWAY_PORT) for client apps; health and metrics
(GATEWAY_OPS_PORT).
Calls: the router (ROUTER_ADDR) within each call's deadline.
Produces: `interns.traces.v1`, one event per call, never blocking the call.
"""

from __future__ import annotations

import asyncio

import grpc

from interns.api.v1 import gateway_pb2, gateway_pb2_grpc, router_pb2_grpc
from interns.common.grpc_server import MAX_MESSAGE_BYTES, GrpcServer
from interns.common.lifecycle import wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.gateway.calls import Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.gateway.settings import GatewaySettings
from interns.gateway.traces import TracePublisher

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, settings.log_format)
    publisher = TracePublisher(settings.kafka_bootstrap_servers, settings.trace_queue_size)
    channel = grpc.aio.insecure_channel(
        settings.router_addr,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    gateway = Gateway(
        router_pb2_grpc.RouterServiceStub(channel),
        publisher,
        settings.default_deadline_s,
        settings.default_tenant,
    )
    grpc_server = GrpcServer(
        "gateway",
        f"{settings.host}:{settings.port}",
        [gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name],
    )
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
        GatewayServicer(gateway), grpc_server.server
    )
    # Ready once the router is reachable; Kafka is not required: traces wait in memory.
    checks = {
        "router": lambda: channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY
    }
    await publisher.start()
    async with OpsServer("gateway", settings.ops_host, settings.ops_port, checks), grpc_server:
        log.info("gateway serving", port=grpc_server.port, router=settings.router_addr)
        signal_name = await wait_for_shutdown_signal()
        log.info("gateway stopping", signal=signal_name)
    await publisher.stop()
    await channel.close()


if __name__ == "__main__":
    asyncio.run(main())
