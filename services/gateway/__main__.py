"""Gateway service entry point.

Serves: `GatewayService` over gRPC (GATEWAY_PORT) for client apps, and OpenAI's
chat-completions API over HTTP (GATEWAY_HTTP_PORT; base URL http://<host>:<port>/v1) on
the same path; health and metrics (GATEWAY_OPS_PORT).
Reads: the `api_keys` table (DATABASE_URL): each call's API key gives its tenant.
Calls: the router within each call's deadline: the router service at ROUTER_ADDR over
gRPC (GATEWAY_ROUTER=remote), or the router run in this process (GATEWAY_ROUTER=embedded:
it then also consumes `interns.rollouts.v1` and `interns.tasks.v1`, calls the expert and
Triton, and produces `interns.shadow.v1`, as the router service does).
Produces: `interns.traces.v1`, one event per call, never blocking the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from sqlalchemy.engine import Engine

from interns.api.v1 import gateway_pb2, gateway_pb2_grpc, router_pb2_grpc
from interns.common.db import database_reachable, make_engine
from interns.common.grpc_server import MAX_MESSAGE_BYTES, GrpcServer
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
from interns.common.tls import (
    aio_channel,
    kafka_broker,
    kafka_client_options,
    kafka_producer_config,
    server_credentials,
)
from interns.common.tracing import configure_tracing
from interns.gateway.auth import DatabaseAuthenticator
from interns.gateway.calls import Admission, Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.gateway.http_api import HttpServer
from interns.gateway.limits import RateLimit, RequestLimits, TenantRateLimiter
from interns.gateway.router_client import EmbeddedRouter, RemoteRouter, RouterClient
from interns.gateway.settings import GatewaySettings
from interns.gateway.traces import DisabledPublisher, TracePublisher
from interns.router.core import RouterCore
from interns.router.settings import RouterSettings

log = get_logger(__name__)


def admission(settings: GatewaySettings, engine: Engine) -> Admission:
    """The gateway's checks, as its settings configure them."""
    return Admission(
        authenticator=DatabaseAuthenticator(engine, settings.api_key_cache_s),
        rate_limiter=TenantRateLimiter(
            RateLimit(settings.rate_limit_rps, settings.rate_limit_burst),
            {
                tenant: RateLimit(limit.rps, limit.burst)
                for tenant, limit in settings.tenant_rate_limits.items()
            },
        ),
        limits=RequestLimits(settings.max_request_bytes, settings.max_messages, settings.max_tools),
        require_api_key=settings.require_api_key,
        default_tenant=settings.default_tenant,
    )


ReadyCheck = Callable[[], bool | Awaitable[bool]]


@contextlib.asynccontextmanager
async def connect_router(
    settings: GatewaySettings,
) -> AsyncIterator[tuple[RouterClient, ReadyCheck]]:
    """The router as GATEWAY_ROUTER says, and the readiness check of it."""
    if settings.router == "remote":
        channel = aio_channel(
            settings.router_addr,
            settings,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        try:
            yield (
                RemoteRouter(router_pb2_grpc.RouterServiceStub(channel)),
                lambda: channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY,
            )
        finally:
            await channel.close()
        return
    router_settings = load_settings(RouterSettings)
    core = RouterCore(router_settings, kafka_broker(router_settings, "interns-gateway-router"))
    # Kafka is not needed to serve: until the table's consumers start, the expert answers.
    starting = asyncio.create_task(core.consume_until_started(), name="router-consumers")
    try:
        async with consumer_lag_watched("router", core.broker):
            yield EmbeddedRouter(core.router), core.ready
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await core.close()


async def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, settings.log_format)
    configure_tracing("gateway")
    publisher = (
        TracePublisher(
            settings.kafka_bootstrap_servers,
            settings.trace_queue_size,
            spill_dir=settings.spill_dir,
            spill_max_bytes=settings.spill_max_bytes,
            send_timeout_s=settings.trace_send_timeout_s,
            linger_ms=settings.trace_linger_ms,
            kafka_options=kafka_client_options(settings),
            producer_options=kafka_producer_config(settings),
            confirm_group=settings.trace_confirm_group,
            hold_max_bytes=settings.trace_hold_max_bytes,
            compression=settings.trace_compression,
        )
        if settings.trace_publishing
        else DisabledPublisher()
    )
    router_connection = connect_router(settings)
    router, router_ready = await router_connection.__aenter__()
    engine = make_engine(settings.database_url)
    gateway = Gateway(router, publisher, settings.default_deadline_s, admission(settings, engine))
    grpc_server = GrpcServer(
        "gateway",
        f"{settings.host}:{settings.port}",
        [gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name],
        credentials=server_credentials(settings),
    )
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
        GatewayServicer(gateway), grpc_server.server
    )
    # Ready once the router and the key store are reachable; Kafka is not required:
    # traces wait in memory.
    checks = {
        "router": router_ready,
        "database": lambda: asyncio.to_thread(database_reachable, engine),
    }
    await publisher.start()
    http_server = HttpServer(
        gateway,
        settings.http_host,
        settings.http_port,
        settings.http_max_body_bytes,
        [settings.expert_model],
    )
    async with (
        OpsServer("gateway", settings.ops_host, settings.ops_port, checks),
        grpc_server,
        http_server,
    ):
        log.info(
            "gateway serving",
            port=grpc_server.port,
            http_port=http_server.port,
            router=settings.router_addr if settings.router == "remote" else "embedded",
            trace_publishing=settings.trace_publishing,
        )
        freeze_startup_objects()
        collect_garbage_less_often()
        signal_name = await wait_for_shutdown_signal()
        log.info("gateway stopping", signal=signal_name)
    await publisher.stop()
    await router_connection.__aexit__(None, None, None)
    engine.dispose()


if __name__ == "__main__":
    run(main())
