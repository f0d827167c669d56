"""When Triton is down the expert answers, and the route says why."""

from __future__ import annotations

import grpc

from interns.api.v1 import chat_pb2, router_pb2, router_pb2_grpc
from interns.common.chat import input_from_openai
from interns.common.events import RolloutChanged
from interns.common.signature import request_signature
from interns.router.interns import InternClient
from interns.router.routing import RoutingTable
from tests.conftest import free_port, openai_log_line
from tests.servers import replay_expert, start_router


async def test_with_triton_down_a_full_route_falls_back_to_the_expert(weather_log):
    body = openai_log_line("Lima", "s")["request"]
    table = RoutingTable()
    table.apply(
        RolloutChanged(
            task_id="weather",
            signature=request_signature(body),
            target="intern-weather",
            model_version=1,
            mode="full",
            changed_by="test",
        )
    )
    interns = InternClient(f"127.0.0.1:{free_port()}", breaker_threshold=2, breaker_ttl_s=60)
    async with replay_expert(weather_log) as expert:
        router = await start_router(expert, table, interns)
        request = router_pb2.RouteChatCompletionRequest(
            trace_id="t",
            metadata=chat_pb2.RequestMetadata(tenant_id="acme", session_id="s"),
            input=input_from_openai(body),
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{router.port}") as channel:
                stub = router_pb2_grpc.RouterServiceStub(channel)
                answers = [await stub.RouteChatCompletion(request, timeout=10) for _ in range(3)]
        finally:
            await router.__aexit__(None, None, None)
            await interns.close()
    assert all(a.output.message.tool_calls[0].function.name == "GetWeather" for a in answers)
    assert [a.route.target for a in answers] == ["expert"] * 3
    assert answers[0].route.reason.startswith("fallback: triton:")
    assert answers[2].route.reason == "fallback: circuit open for intern-weather v1"
