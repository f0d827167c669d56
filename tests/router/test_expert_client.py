"""The expert client: retries what is worth retrying, and says clearly what failed."""

from __future__ import annotations

import grpc
import httpx
import pytest

from interns.router.expert import ExpertClient, ExpertError

ANSWER = {
    "id": "c1",
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


def client_answering(*responses: httpx.Response, attempts: int = 4):
    calls: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://e/v1/")
    return ExpertClient("http://e/v1", api_key="k", max_attempts=attempts, http=http), calls


async def test_429_and_503_are_retried_until_the_expert_answers():
    client, calls = client_answering(
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.Response(503, text="busy"),
        httpx.Response(200, json=ANSWER),
    )
    assert (await client.complete({"messages": []}))["id"] == "c1"
    assert len(calls) == 3


async def test_a_bad_request_is_not_retried_and_keeps_the_experts_message():
    client, calls = client_answering(
        httpx.Response(400, json={"error": {"message": "messages: too long"}})
    )
    with pytest.raises(ExpertError) as failed:
        await client.complete({"messages": []})
    assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages: too long" in str(failed.value)
    assert len(calls) == 1


async def test_retries_stop_after_the_configured_attempts():
    client, calls = client_answering(httpx.Response(502, text="bad gateway"), attempts=3)
    with pytest.raises(ExpertError) as failed:
        await client.complete({"messages": []})
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(calls) == 3


async def test_an_unreachable_expert_is_unavailable():
    client = ExpertClient("http://127.0.0.1:9/v1", max_attempts=2)
    with pytest.raises(ExpertError) as failed:
        await client.complete({"messages": []}, deadline_s=2)
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    await client.aclose()
