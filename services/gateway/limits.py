"""How much a call and a tenant may ask: request size limits and rate limits per tenant."""

from __future__ import annotations

from dataclasses import dataclass, field

from token_bucket import Limiter, MemoryStorage

from interns.api.v1 import gateway_pb2
from interns.common.chat import InvalidRequest

ChatRequest = gateway_pb2.CreateChatCompletionRequest | gateway_pb2.StreamChatCompletionRequest


@dataclass(frozen=True)
class RequestLimits:
    """The largest request the gateway accepts."""

    max_request_bytes: int = 1024 * 1024
    max_messages: int = 256
    max_tools: int = 128


def check_request_limits(request: ChatRequest, limits: RequestLimits) -> None:
    """Raises InvalidRequest naming the field that is over its limit. The serialized size
    comes first: it is cheap and bounds the work of every later check."""
    size = request.ByteSize()
    if size > limits.max_request_bytes:
        raise InvalidRequest("request", f"{size} bytes, at most {limits.max_request_bytes}")
    messages = len(request.input.messages)
    if messages > limits.max_messages:
        raise InvalidRequest(
            "input.messages", f"{messages} messages, at most {limits.max_messages}"
        )
    tools = len(request.input.tools)
    if tools > limits.max_tools:
        raise InvalidRequest("input.tools", f"{tools} tools, at most {limits.max_tools}")


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `rps` calls a second on average, bursts of up to `burst` calls."""

    rps: float
    burst: int

    def describe(self) -> str:
        """The limit as refusals state it, for example `500 calls/s (burst 1000)`."""
        return f"{self.rps:g} calls/s (burst {self.burst})"


@dataclass
class TenantRateLimiter:
    """A token bucket per tenant, `default` unless the tenant has an override.

    The buckets live in this process's memory: each gateway replica limits on its own, so
    a tenant may reach its limit once per replica. That keeps the check free of network
    calls; a shared store (Redis) would make the limit fleet-wide at the cost of a round
    trip per call.
    """

    default: RateLimit
    overrides: dict[str, RateLimit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # token_bucket's Limiter keeps keyed buckets of one rate and capacity: one limiter
        # for the default, and one per tenant with its own limit.
        self._default = Limiter(self.default.rps, self.default.burst, MemoryStorage())
        self._own = {
            tenant: Limiter(limit.rps, limit.burst, MemoryStorage())
            for tenant, limit in self.overrides.items()
        }

    def limit_of(self, tenant: str) -> RateLimit:
        """The rate limit that applies to `tenant`."""
        return self.overrides.get(tenant, self.default)

    def try_acquire(self, tenant: str) -> bool:
        """Takes one call from the tenant's bucket; False when the tenant is over its limit
        (nothing is taken then)."""
        limiter = self._own.get(tenant, self._default)
        # token_bucket refuses an empty key; the empty tenant still gets a bucket.
        return limiter.consume(tenant or "\0")
