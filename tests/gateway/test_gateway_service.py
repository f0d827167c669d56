"""The serving path in process: client -> gateway -> router -> replay expert, over real gRPC,
with the router as its own gRPC server (GATEWAY_ROUTER=remote) and inside the gateway
(GATEWAY_ROUTER=embedded): both must behave alike."""

from __future__ import annotations

import json

import grpc
import pytest

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.common.chat import input_from_openai
from interns.common.grpc_server import GrpcServer
from interns.gateway.calls import Admission, Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.gateway.limits import RateLimit, TenantRateLimiter
from interns.gateway.router_client import EmbeddedRouter
from tests.conftest import openai_log_line
from tests.gateway.recording import RecordingPublisher
from tests.servers import (
    MemoryAuthenticator,
    bearer,
    make_router,
    replay_expert,
    start_gateway,
    start_router,
)

KEY = bearer("ik_weather-team")


def team_admission() -> Admission:
    return Admission(
        MemoryAuthenticator({"ik_weather-team": "acme"}), TenantRateLimiter(RateLimit(100, 100))
    )


async def start_embedded_gateway(expert, publisher: RecordingPublisher) -> GrpcServer:
    """A gateway whose router runs in its process (GATEWAY_ROUTER=embedded)."""
    gateway = Gateway(EmbeddedRouter(make_router(expert)), publisher, 10.0, team_admission())
    server = GrpcServer("gateway", "127.0.0.1:0", ["interns.api.v1.GatewayService"], grace=1)
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(gateway), server.server)
    return await server.__aenter__()


@pytest.fixture
async def remote_gateway(weather_log):
    publisher = RecordingPublisher()
    async with replay_expert(weather_log) as expert:
        router = await start_router(expert)
        gateway = await start_gateway(f"127.0.0.1:{router.port}", publisher, team_admission())
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        yield gateway_pb2_grpc.GatewayServiceStub(channel), publisher, router
        await channel.close()
        await gateway.__aexit__(None, None, None)
        await router.__aexit__(None, None, None)


@pytest.fixture
async def embedded_gateway(weather_log):
    publisher = RecordingPublisher()
    async with replay_expert(weather_log) as expert:
        gateway = await start_embedded_gateway(expert, publisher)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        yield gateway_pb2_grpc.GatewayServiceStub(channel), publisher, None
        await channel.close()
        await gateway.__aexit__(None, None, None)


@pytest.fixture(params=["remote", "embedded"])
def gateway(request):
    return request.getfixturevalue(f"{request.param}_gateway")


def weather_request(city: str = "Lima") -> gateway_pb2.CreateChatCompletionRequest:
    record = openai_log_line(city, "s-1")
    return gateway_pb2.CreateChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(agent_id="weather-bot", session_id="s-1"),
        input=input_from_openai(record["request"]),
    )


async def test_a_call_gets_the_experts_tool_call_and_is_traced(gateway):
    stub, publisher, _ = gateway
    response = await stub.CreateChatCompletion(weather_request("Lima"), timeout=10, metadata=KEY)

    call = response.output.message.tool_calls[0]
    assert call.function.name == "GetWeather"
    assert json.loads(call.function.arguments) == {"city": "Lima", "date": "2019-03-02"}
    assert response.output.finish_reason == "tool_calls"
    assert response.route.target == "expert"
    assert response.output.usage.total_tokens > 0

    (trace,) = publisher.traces
    assert trace.trace_id == response.trace_id
    assert (trace.tenant_id, trace.agent_id, trace.session_id) == ("acme", "weather-bot", "s-1")
    assert trace.request.messages[1].content == "What's the weather in Lima tomorrow?"
    assert trace.request.tools[0]["function"]["name"] == "GetWeather"
    assert trace.response.message.tool_calls[0].function.name == "GetWeather"
    assert trace.status == "ok" and trace.latency_ms > 0
    # The expert's tokens, priced by the router's price table (see tests/servers.py).
    usage = response.output.usage
    expected = (usage.prompt_tokens * 1000.0 + usage.completion_tokens * 4000.0) / 1e6
    assert trace.cost_usd == pytest.approx(expected) and expected > 0


async def test_streaming_delivers_the_same_answer_in_chunks(gateway):
    stub, publisher, _ = gateway
    request = weather_request("Oslo")
    chunks = [
        chunk
        async for chunk in stub.StreamChatCompletion(
            gateway_pb2.StreamChatCompletionRequest(metadata=request.metadata, input=request.input),
            timeout=10,
            metadata=KEY,
        )
    ]
    assert chunks[0].route.target == "expert"
    assert len({chunk.trace_id for chunk in chunks}) == 1
    calls = [call for chunk in chunks for call in chunk.delta.tool_calls]
    assert [c.function.name for c in calls] == ["GetWeather"]
    assert json.loads(calls[0].function.arguments)["city"] == "Oslo"
    assert chunks[-1].delta.finish_reason == "tool_calls"
    (trace,) = publisher.traces
    assert trace.trace_id == chunks[0].trace_id
    assert trace.response.message.tool_calls[0].function.name == "GetWeather"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.input.ClearField("messages"), "input.messages"),
        (lambda r: setattr(r.input.messages[1], "role", "robot"), "input.messages[1].role"),
        (
            lambda r: setattr(r.input.tools[0].function, "parameters_json", "{not json"),
            "input.tools[0].function.parameters_json",
        ),
        (lambda r: setattr(r.input, "tool_choice", "NoSuchTool"), "input.tool_choice"),
        (lambda r: setattr(r.input.response_format, "type", "yaml"), "input.response_format.type"),
        (lambda r: setattr(r.input, "max_tokens", -5), "input.max_tokens"),
    ],
)
async def test_a_malformed_request_is_refused_naming_the_field(gateway, mutate, field):
    stub, publisher, _ = gateway
    request = weather_request()
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateChatCompletion(request, timeout=10, metadata=KEY)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"{field}:")
    assert publisher.traces == []


async def test_a_conversation_the_expert_cannot_answer_is_not_found_and_traced(gateway):
    stub, publisher, _ = gateway
    request = weather_request()
    request.input.messages[1].content = "Something nobody recorded"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.CreateChatCompletion(request, timeout=10, metadata=KEY)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    (trace,) = publisher.traces
    assert trace.status == "error" and trace.error.startswith("NOT_FOUND")


async def test_when_the_router_is_down_the_call_fails_unavailable_and_is_traced(remote_gateway):
    stub, publisher, router = remote_gateway
    await router.__aexit__(None, None, None)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.CreateChatCompletion(weather_request(), timeout=5, metadata=KEY)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert publisher.traces[-1].status == "error"


async def test_an_embedded_router_that_fails_gives_unknown_as_a_remote_one_does(weather_log):
    publisher = RecordingPublisher()
    async with replay_expert(weather_log) as expert:
        router = make_router(expert)

        def broken(chat, metadata):
            raise RuntimeError("table corrupt")

        router._route = broken
        gateway = Gateway(EmbeddedRouter(router), publisher, 10.0, team_admission())
        server = GrpcServer("gateway", "127.0.0.1:0", ["interns.api.v1.GatewayService"], grace=1)
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
            GatewayServicer(gateway), server.server
        )
        async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.CreateChatCompletion(weather_request(), timeout=10, metadata=KEY)
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
    assert "table corrupt" in failed.value.details()
    (trace,) = publisher.traces
    assert trace.status == "error" and trace.error.startswith("UNKNOWN")
