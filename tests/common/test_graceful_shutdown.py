"""A gRPC service that is told to stop finishes the calls it has in flight and takes no
new ones."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from interns.api.v1 import chat_pb2, router_pb2, router_pb2_grpc
from tests.servers import expert_serving, start_router

ANSWER = {
    "id": "c1",
    "model": "slow-expert",
    "choices": [{"message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
}


@pytest.fixture
async def slow_expert():
    """An expert that takes half a second to answer; the event tells a call reached it."""
    arrived = asyncio.Event()

    async def chat(_: Request) -> JSONResponse:
        arrived.set()
        await asyncio.sleep(0.5)
        return JSONResponse(ANSWER)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    async with expert_serving(app, max_attempts=4) as expert:
        yield expert, arrived


async def test_in_flight_calls_finish_when_the_server_stops(slow_expert):
    expert, arrived = slow_expert
    server = await start_router(expert)
    address = f"127.0.0.1:{server.port}"
    request = router_pb2.RouteChatCompletionRequest(
        input=chat_pb2.ChatCompletionInput(
            messages=[chat_pb2.ChatMessage(role="user", content="hi")]
        )
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        in_flight = asyncio.ensure_future(stub.RouteChatCompletion(request, timeout=10))
        # The call is in flight once the expert has it (a fixed sleep races a busy machine).
        await asyncio.wait_for(arrived.wait(), timeout=10)
        stopping = asyncio.create_task(server.__aexit__(None, None, None))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RouteChatCompletion(request, timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        response = await in_flight
        await stopping
    assert response.output.message.content == "done"
