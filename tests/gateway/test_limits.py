"""Rate limits per tenant (token buckets) and request size limits."""

from __future__ import annotations

import time

import pytest

from interns.api.v1 import chat_pb2, gateway_pb2
from interns.common.chat import InvalidRequest
from interns.gateway.limits import (
    RateLimit,
    RequestLimits,
    TenantRateLimiter,
    check_request_limits,
)


def test_a_tenant_gets_its_burst_then_is_refused():
    limiter = TenantRateLimiter(RateLimit(rps=1, burst=3))
    assert [limiter.try_acquire("acme") for _ in range(5)] == [True, True, True, False, False]


def test_one_tenant_over_its_limit_does_not_slow_another():
    limiter = TenantRateLimiter(RateLimit(rps=1, burst=2))
    assert [limiter.try_acquire("acme") for _ in range(3)] == [True, True, False]
    assert [limiter.try_acquire("globex") for _ in range(2)] == [True, True]


def test_the_bucket_refills_at_the_rate():
    limiter = TenantRateLimiter(RateLimit(rps=50, burst=1))
    assert limiter.try_acquire("acme")
    assert not limiter.try_acquire("acme")
    time.sleep(0.1)  # 5 tokens' worth at 50/s; the bucket holds 1
    assert limiter.try_acquire("acme")
    assert not limiter.try_acquire("acme")


def test_a_tenant_with_its_own_limit_gets_it():
    limiter = TenantRateLimiter(RateLimit(rps=1, burst=1), {"big": RateLimit(rps=1, burst=4)})
    assert sum(limiter.try_acquire("big") for _ in range(10)) == 4
    assert sum(limiter.try_acquire("small") for _ in range(10)) == 1
    assert limiter.limit_of("big").describe() == "1 calls/s (burst 4)"
    assert limiter.limit_of("small") == RateLimit(1, 1)


def request_with(messages: int = 1, tools: int = 0, text: str = "hi"):
    return gateway_pb2.CreateChatCompletionRequest(
        input=chat_pb2.ChatCompletionInput(
            messages=[chat_pb2.ChatMessage(role="user", content=text) for _ in range(messages)],
            tools=[
                chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name=f"f{i}"))
                for i in range(tools)
            ],
        )
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (request_with(messages=300), "input.messages: 300 messages, at most 256"),
        (request_with(tools=129), "input.tools: 129 tools, at most 128"),
        (request_with(text="x" * 2_000_000), "request: 2000"),
    ],
)
def test_a_request_over_a_limit_is_refused_naming_the_field_and_the_limit(request_, message):
    with pytest.raises(InvalidRequest) as refused:
        check_request_limits(request_, RequestLimits())
    assert str(refused.value).startswith(message)


def test_the_size_is_the_serialized_size_and_the_limit_is_inclusive():
    request = request_with(text="x" * 100)
    size = request.ByteSize()
    check_request_limits(request, RequestLimits(max_request_bytes=size))
    with pytest.raises(InvalidRequest, match=f"request: {size} bytes, at most {size - 1}"):
        check_request_limits(request, RequestLimits(max_request_bytes=size - 1))


def test_requests_at_the_limits_pass():
    check_request_limits(request_with(messages=256, tools=128), RequestLimits())
