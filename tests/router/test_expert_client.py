"""The expert client against a real HTTP server: retries what is worth retrying, within
the deadline, and says clearly what failed."""

from __future__ import annotations

from contextlib import asynccontextmanager

import grpc
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from interns.common.ops import UvicornRunner
from interns.router.expert import ExpertClient, ExpertError
from tests.conftest import free_port

ANSWER = {
    "id": "c1",
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


@asynccontextmanager
async def expert_answering(*statuses: int):
    """A real OpenAI-compatible server on a free port: it answers `statuses` in turn (the
    last one from then on), 200 with ANSWER; it counts the calls it got."""
    calls: list[int] = []

    async def chat(request: Request):
        status = statuses[min(len(calls), len(statuses) - 1)]
        calls.append(status)
        if status == 200:
            return JSONResponse(ANSWER)
        if status == 400:
            return JSONResponse({"error": {"message": "messages: too long"}}, status_code=400)
        return PlainTextResponse("busy", status_code=status)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    async with UvicornRunner(app, "127.0.0.1", 0) as server:
        client = ExpertClient(f"http://127.0.0.1:{server.port}/v1", api_key="k", max_attempts=3)
        try:
            yield client, calls
        finally:
            await client.aclose()


async def test_429_and_503_are_retried_until_the_expert_answers():
    async with expert_answering(429, 503, 200) as (client, calls):
        assert (await client.complete({"messages": []}))["id"] == "c1"
    assert calls == [429, 503, 200]


async def test_a_bad_request_is_not_retried_and_keeps_the_experts_message():
    async with expert_answering(400) as (client, calls):
        with pytest.raises(ExpertError) as failed:
            await client.complete({"messages": []})
    assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages: too long" in str(failed.value)
    assert calls == [400]


async def test_retries_stop_after_the_configured_attempts():
    async with expert_answering(502) as (client, calls):
        with pytest.raises(ExpertError) as failed:
            await client.complete({"messages": []})
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(calls) == 3


async def test_an_unreachable_expert_is_unavailable():
    client = ExpertClient(f"http://127.0.0.1:{free_port()}/v1", max_attempts=2)
    with pytest.raises(ExpertError) as failed:
        await client.complete({"messages": []}, deadline_s=2)
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    await client.aclose()
