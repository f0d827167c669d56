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
from interns.common.events import ShadowCompared
from interns.common.grpc_server import GrpcServer
from interns.common.lifecycle import freeze_startup_objects, run, wait_for_shutdown_signal
from interns.common.logging import configure_logging, get_logger
from interns.common.metrics import EVENTS_PUBLISHED, consumer_lag_watched
from interns.common.ops import OpsServer
from interns.common.settings import load_settings
from interns.common.tls import kafka_broker, server_credentials, triton_client_options
from interns.common.tracing import configure_tracing
from interns.router.consumers import subscribe
from interns.router.expert import ExpertClient
from interns.router.grpc_service import RouterServicer
from interns.router.interns import InternClient
from interns.router.routing import RoutingTable
from interns.router.serving import Router, RouterConfig
from interns.router.settings import RouterSettings

log = get_logger(__name__)


async def main() -> None:
    settings = load_settings(RouterSettings)
    configure_logging("router", settings.log_level, settings.log_format)
    configure_tracing("router")
    table = RoutingTable()
    broker = kafka_broker(settings, "interns-router")

    subscribe(broker, table)
    shadows = broker.publisher(ShadowCompared.topic, schema=ShadowCompared)

    async def publish_shadow(comparison: ShadowCompared) -> None:
        await shadows.publish(comparison.model_dump(mode="json"), key=comparison.key())
        EVENTS_PUBLISHED.labels("router", ShadowCompared.topic).inc()

    expert = ExpertClient(
        settings.expert_base_url,
        settings.expert_api_key,
        settings.expert_timeout_s,
        settings.expert_max_attempts,
    )
    interns = InternClient(
        settings.triton_grpc_addr,
        settings.breaker_failures,
        settings.breaker_open_s,
        triton_client_options(settings),
    )
    config = RouterConfig(
        expert_model=settings.expert_model,
        intern_timeout_s=settings.intern_timeout_s,
        prices=settings.expert_prices,
        shadow_concurrency=settings.shadow_concurrency,
        check_share=settings.check_share,
    )
    router = Router(table, expert, config, interns, publish_shadow)
    grpc_server = GrpcServer(
        "router",
        f"{settings.host}:{settings.port}",
        [router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name],
        credentials=server_credentials(settings),
    )
    router_pb2_grpc.add_RouterServiceServicer_to_server(
        RouterServicer(router, table), grpc_server.server
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
            signal_name = await wait_for_shutdown_signal()
            log.info("router stopping", signal=signal_name)
        await router.drain()
    await expert.aclose()
    await interns.close()


if __name__ == "__main__":
    run(main())
