"""The router's serving core, wired from its settings: the routing table fed from Kafka,
the expert and Triton clients, the `Router` and its publisher of comparisons.

The router service serves it over gRPC (`interns.router.__main__`). A gateway run with
GATEWAY_ROUTER=embedded builds the same core in its own process and calls the `Router`
directly, without the gRPC hop: same settings (ROUTER_*, EXPERT_*, TRITON_GRPC_ADDR), same
table consumer, checks, fallbacks and metrics. This module is the one part of the router
another service may import, and it imports the router whole, never a piece of its logic.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from interns.common.events import ShadowCompared
from interns.common.logging import get_logger
from interns.common.metrics import EVENTS_PUBLISHED
from interns.common.tls import triton_client_options
from interns.router.consumers import subscribe
from interns.router.expert import ExpertClient
from interns.router.interns import InternClient
from interns.router.routing import RoutingTable
from interns.router.serving import Router, RouterConfig
from interns.router.settings import RouterSettings

log = get_logger(__name__)


class RouterCore:
    """Everything a router replica serves with. Built before `broker` starts (its
    subscribers and publisher are registered here); `close` at the end."""

    def __init__(self, settings: RouterSettings, broker: KafkaBroker):
        self.settings = settings
        self.broker = broker
        self.table = RoutingTable()
        subscribe(broker, self.table)
        shadows = broker.publisher(ShadowCompared.topic, schema=ShadowCompared)
        published = EVENTS_PUBLISHED.labels("router", ShadowCompared.topic)

        async def publish_shadow(comparison: ShadowCompared) -> None:
            await shadows.publish(comparison.model_dump(mode="json"), key=comparison.key())
            published.inc()

        self.expert = ExpertClient(
            settings.expert_base_url,
            settings.expert_api_key,
            settings.expert_timeout_s,
            settings.expert_max_attempts,
        )
        self.interns = InternClient(
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
        self.router = Router(self.table, self.expert, config, self.interns, publish_shadow)
        self.consuming = False

    async def consume_until_started(self) -> None:
        """Starts the broker (the table's consumers and the comparisons' producer),
        retrying with backoff for as long as Kafka is unreachable. Meanwhile the table is
        empty: every call goes to the expert, as with a router that has no route yet."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((KafkaError, OSError)),
            wait=wait_random_exponential(multiplier=0.25, max=5.0),
            before_sleep=_log_unreachable,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    await self.broker.start()
                except BaseException:
                    await self.broker.stop()
                    raise
        self.consuming = True
        log.info("routing table consumers started")

    async def ready(self) -> bool:
        """Whether the table's consumers run and Kafka answers."""
        return self.consuming and await self.broker.ping(timeout=2.0)

    async def close(self, drain_s: float = 5.0) -> None:
        """Waits for shadow calls and checks in flight (their comparisons still go to
        Kafka), then stops the broker and closes the clients."""
        await self.router.drain(drain_s)
        await self.broker.stop()
        self.consuming = False
        await self.close_clients()

    async def close_clients(self) -> None:
        """Closes the expert's and Triton's clients."""
        await self.expert.aclose()
        await self.interns.close()


def _log_unreachable(state: RetryCallState) -> None:
    log.warning(
        "kafka unreachable, the routing table waits (calls go to the expert)",
        error=repr(state.outcome.exception()) if state.outcome else "",
        attempt=state.attempt_number,
    )
