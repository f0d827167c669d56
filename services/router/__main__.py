"""Router service entry point.

Consumes: `interns.rollouts.v1` (the routing table) and `interns.tasks.v1` (the matchers
of split signatures), each read whole by every replica.
Serves: `RouterService` over gRPC (ROUTER_PORT), health and metrics (ROUTER_OPS_PORT).
Produces: `interns.shadow.v1` (expert and intern answers compared: in shadow mode, and for
a sampled share of intern-served calls, ROUTER_CHECK_SHARE).
Calls: the expert (EXPERT_BASE_URL); interns on Triton (TRITON_GRPC_ADDR), falling back
to the expert when an intern fails, is slow or gives an answer that fails its checks.
"""

from __future__ import annotations

from interns.api.v1 import router_pb2, router_pb2_grpc
from interns.common.grpc_server import GrpcServer
from interns.common.lifecycle import (
    collect_garbage_less_often,
    freeze_startup_objects,
    run,
    wait_for_shutdown_signal,
)
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import consumer_lag_watched
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.common.tls import kafka_broker, server_credentials
from interns.common.tracing import configure_tracing
from interns.router.core import RouterCore
from interns.router.grpc_service import RouterServicer
from interns.router.settings import RouterSettings

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(RouterSettings)
    configure_logging("router", settings.log_level, settings.log_format)
    configure_tracing("router")
    broker = kafka_broker(settings, "interns-router")
    core = RouterCore(settings, broker)
    grpc_server = GrpcServer(
        "router",
        f"{settings.host}:{settings.port}",
        [router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name],
        credentials=server_credentials(settings),
    )
    router_pb2_grpc.add_RouterServiceServicer_to_server(
        RouterServicer(core.router, core.table), grpc_server.server
    )
    checks = {"kafka": lambda: broker.ping(timeout=2.0)}
    async with (
        broker,
        OpsServer("router", settings.ops_host, settings.ops_port, checks),
        consumer_lag_watched("router", broker),
    ):
        await broker.start()
        async with grpc_server:
            log.info("router serving", port=grpc_server.port, expert=settings.expert_base_url)
            freeze_startup_objects()
            collect_garbage_less_often()
            signal_name = await wait_for_shutdown_signal()
            log.info("router stopping", signal=signal_name)
        await core.router.drain()
    await core.close_clients()


if __name__ == "__main__":
    run(main())
