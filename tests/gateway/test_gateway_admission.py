"""Who may call the gateway, and how much: API keys per tenant (checked against the key
store on SQLite), tenant isolation, rate limits per tenant and request size limits, over
real gRPC."""

from __future__ import annotations

from contextlib import AsyncExitStack

import grpc
import pytest

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.common import api_keys
from interns.common.chat import input_from_openai
from interns.gateway.auth import DatabaseAuthenticator
from interns.gateway.calls import Admission
from interns.gateway.limits import RateLimit, RequestLimits, TenantRateLimiter
from tests.conftest import openai_log_line
from tests.gateway.recording import RecordingPublisher
from tests.servers import bearer, replay_expert, start_gateway, start_router


@pytest.fixture
async def serve(weather_log, engine):
    """Starts router and gateway; the gateway admits calls as `admission` says (by default:
    keys from the key store, read on every call, and a generous rate)."""
    started = []
    experts = AsyncExitStack()

    async def start(**options):
        options.setdefault("authenticator", DatabaseAuthenticator(engine, cache_ttl_s=0))
        options.setdefault("rate_limiter", TenantRateLimiter(RateLimit(1000, 1000)))
        publisher = RecordingPublisher()
        expert = await experts.enter_async_context(replay_expert(weather_log))
        router = await start_router(expert)
        gateway = await start_gateway(f"127.0.0.1:{router.port}", publisher, Admission(**options))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        started.append((channel, gateway, router))
        return gateway_pb2_grpc.GatewayServiceStub(channel), publisher

    async with experts:
        yield start
        for channel, gateway, router in started:
            await channel.close()
            await gateway.__aexit__(None, None, None)
            await router.__aexit__(None, None, None)


def weather_request(
    city: str = "Lima", session: str = "s-1", tenant: str = ""
) -> gateway_pb2.CreateChatCompletionRequest:
    return gateway_pb2.CreateChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(
            tenant_id=tenant, agent_id="weather-bot", session_id=session
        ),
        input=input_from_openai(openai_log_line(city, session)["request"]),
    )


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value


async def test_a_call_without_a_key_is_unauthenticated_and_says_how_to_send_one(serve):
    stub, publisher = await serve()
    error = await refused(stub.CreateChatCompletion(weather_request(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "missing API key: send authorization: Bearer <key>"
    stream = stub.StreamChatCompletion(
        gateway_pb2.StreamChatCompletionRequest(input=weather_request().input), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for _ in stream:
            pass
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert publisher.traces == []


@pytest.mark.parametrize("key", ["ik_not-a-key-anyone-made", "sk-openai-style", "ik_"])
async def test_an_unknown_key_is_unauthenticated(serve, engine, key):
    api_keys.create_key(engine, "acme")
    stub, publisher = await serve()
    error = await refused(
        stub.CreateChatCompletion(weather_request(), metadata=bearer(key), timeout=10)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid API key" in error.details()
    assert publisher.traces == []


async def test_a_revoked_key_is_refused(serve, engine):
    created = api_keys.create_key(engine, "acme")
    stub, _ = await serve()
    answered = await stub.CreateChatCompletion(
        weather_request(), metadata=bearer(created.key), timeout=10
    )
    assert answered.output.message.tool_calls[0].function.name == "GetWeather"

    api_keys.revoke_key(engine, created.record.key_id)
    error = await refused(
        stub.CreateChatCompletion(weather_request(), metadata=bearer(created.key), timeout=10)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_tenant_comes_from_the_key_whatever_the_client_says(serve, engine):
    acme = api_keys.create_key(engine, "acme")
    stub, publisher = await serve()
    await stub.CreateChatCompletion(
        weather_request(tenant="globex"), metadata=bearer(acme.key), timeout=10
    )
    (trace,) = publisher.traces
    assert trace.tenant_id == "acme"


async def test_another_tenant_using_the_same_session_id_stays_in_its_own_session(serve, engine):
    acme = api_keys.create_key(engine, "acme")
    globex = api_keys.create_key(engine, "globex")
    stub, publisher = await serve()
    await stub.CreateChatCompletion(
        weather_request("Lima", session="s-7"), metadata=bearer(acme.key), timeout=10
    )
    # A client of globex sends acme's session id and claims to be acme.
    await stub.CreateChatCompletion(
        weather_request("Oslo", session="s-7", tenant="acme"),
        metadata=bearer(globex.key),
        timeout=10,
    )
    sessions = {
        (t.tenant_id, t.session_id): t.request.messages[1].content for t in publisher.traces
    }
    assert sessions == {
        ("acme", "s-7"): "What's the weather in Lima tomorrow?",
        ("globex", "s-7"): "What's the weather in Oslo tomorrow?",
    }


async def test_a_tenant_over_its_rate_limit_is_refused_and_others_are_not(serve, engine):
    acme = api_keys.create_key(engine, "acme")
    globex = api_keys.create_key(engine, "globex")
    stub, publisher = await serve(rate_limiter=TenantRateLimiter(RateLimit(rps=0.01, burst=2)))
    for _ in range(2):
        await stub.CreateChatCompletion(weather_request(), metadata=bearer(acme.key), timeout=10)
    error = await refused(
        stub.CreateChatCompletion(weather_request(), metadata=bearer(acme.key), timeout=10)
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details().startswith(
        "tenant 'acme' is over its rate limit of 0.01 calls/s (burst 2)"
    )
    await stub.CreateChatCompletion(weather_request(), metadata=bearer(globex.key), timeout=10)
    assert [t.tenant_id for t in publisher.traces] == ["acme", "acme", "globex"]


async def test_a_tenant_with_its_own_limit_gets_it(serve, engine):
    big = api_keys.create_key(engine, "big")
    limiter = TenantRateLimiter(RateLimit(rps=0.01, burst=1), {"big": RateLimit(0.01, 3)})
    stub, _ = await serve(rate_limiter=limiter)
    outcomes = []
    for _ in range(4):
        try:
            await stub.CreateChatCompletion(weather_request(), metadata=bearer(big.key), timeout=10)
            outcomes.append("ok")
        except grpc.aio.AioRpcError as error:
            outcomes.append(error.code().name)
    assert outcomes == ["ok", "ok", "ok", "RESOURCE_EXHAUSTED"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: setattr(r.input.messages[1], "content", "x" * 5000),
            "request: 5",
        ),
        (
            lambda r: r.input.messages.extend([r.input.messages[1]] * 10),
            "input.messages: 12 messages, at most 4",
        ),
        (
            lambda r: r.input.tools.extend([r.input.tools[0]] * 3),
            "input.tools: 4 tools, at most 2",
        ),
    ],
)
async def test_an_oversized_request_is_refused_naming_the_field_and_the_limit(
    serve, engine, mutate, message
):
    acme = api_keys.create_key(engine, "acme")
    stub, publisher = await serve(
        limits=RequestLimits(max_request_bytes=4096, max_messages=4, max_tools=2)
    )
    request = weather_request()
    mutate(request)
    error = await refused(stub.CreateChatCompletion(request, metadata=bearer(acme.key), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(message)
    assert error.details().endswith(("at most 4096", "at most 4", "at most 2"))
    assert publisher.traces == []


async def test_size_is_checked_before_the_key(serve):
    stub, _ = await serve(limits=RequestLimits(max_request_bytes=100))
    error = await refused(stub.CreateChatCompletion(weather_request(), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("request: ")


async def test_without_required_keys_a_keyless_call_is_the_default_tenants(serve, engine):
    acme = api_keys.create_key(engine, "acme")
    stub, publisher = await serve(require_api_key=False, default_tenant="shared")
    await stub.CreateChatCompletion(weather_request(), timeout=10)
    await stub.CreateChatCompletion(weather_request(), metadata=bearer(acme.key), timeout=10)
    assert [t.tenant_id for t in publisher.traces] == ["shared", "acme"]
    error = await refused(
        stub.CreateChatCompletion(weather_request(), metadata=bearer("ik_wrong"), timeout=10)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
