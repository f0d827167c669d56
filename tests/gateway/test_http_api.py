"""The OpenAI-compatible HTTP API in process: HTTP client -> gateway -> router -> replay
expert, with raw HTTP and with the official `openai` SDK; the router over real gRPC
(GATEWAY_ROUTER=remote) and inside the gateway (embedded), which must behave alike."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from interns.api.v1 import router_pb2_grpc
from interns.common.grpc_server import GrpcServer
from interns.gateway.calls import Admission, Gateway
from interns.gateway.http_api import HttpServer, build_http_app
from interns.gateway.limits import RateLimit, TenantRateLimiter
from interns.gateway.router_client import EmbeddedRouter, RemoteRouter
from interns.router.expert import ExpertClient
from tests.conftest import openai_log_line
from tests.gateway.recording import RecordingPublisher
from tests.servers import (
    MemoryAuthenticator,
    expert_serving,
    make_router,
    replay_expert,
    start_router,
)

API_KEY = "sk-interns-test"
MAX_BODY_BYTES = 64 * 1024
AGENT = {"x-interns-agent-id": "weather-bot", "x-interns-session-id": "s-42"}


@dataclass
class Served:
    gateway: Gateway
    publisher: RecordingPublisher
    router: GrpcServer | None  # None: the router is embedded

    @property
    def app(self) -> Starlette:
        return build_http_app(self.gateway, MAX_BODY_BYTES, ["replay"])

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://gateway",
            headers={"authorization": f"Bearer {API_KEY}", **AGENT},
        )

    def sdk(self, api_key: str = API_KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url="http://gateway/v1",
            api_key=api_key,
            max_retries=0,
            default_headers=AGENT,
            http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app)),
        )


MODES = ["remote", "embedded"]


@asynccontextmanager
async def serving(
    expert: ExpertClient, rate: RateLimit = RateLimit(1000, 1000), mode: str = "remote"
):
    publisher = RecordingPublisher()
    if mode == "embedded":
        admission = Admission(MemoryAuthenticator({API_KEY: "acme"}), TenantRateLimiter(rate))
        gateway = Gateway(EmbeddedRouter(make_router(expert)), publisher, 10.0, admission)
        yield Served(gateway, publisher, None)
        return
    router = await start_router(expert)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    admission = Admission(MemoryAuthenticator({API_KEY: "acme"}), TenantRateLimiter(rate))
    router_client = RemoteRouter(router_pb2_grpc.RouterServiceStub(channel))
    gateway = Gateway(router_client, publisher, 10.0, admission)
    try:
        yield Served(gateway, publisher, router)
    finally:
        await channel.close()
        await router.__aexit__(None, None, None)


@pytest.fixture(params=MODES)
async def served(weather_log, request):
    async with replay_expert(weather_log) as expert, serving(expert, mode=request.param) as served:
        yield served


@pytest.fixture
async def served_remotely(weather_log):
    async with replay_expert(weather_log) as expert, serving(expert) as served:
        yield served


def weather_body(city: str = "Lima", **extra) -> dict:
    # A deep copy: the tool definition is shared by every test.
    return copy.deepcopy({**openai_log_line(city, "s-1")["request"], **extra})


def no_agent_headers() -> dict[str, str]:
    return {name: "" for name in AGENT}


def recorded_call(city: str) -> dict:
    return openai_log_line(city, "s-1")["response"]["choices"][0]["message"]["tool_calls"][0]


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of a Server-Sent Events body, checking its framing."""
    assert text.endswith("\n\n")
    events = text.removesuffix("\n\n").split("\n\n")
    assert all(event.startswith("data: ") for event in events), events
    return [event.removeprefix("data: ") for event in events]


async def test_a_call_answers_the_recorded_tool_call_as_a_chat_completion(served):
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=weather_body("Lima"))

    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion" and body["id"] and body["created"] > 0
    assert body["model"] == "replay"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [recorded_call("Lima")]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert answer.headers["x-interns-route"] == "expert"

    (trace,) = served.publisher.traces
    assert trace.trace_id == answer.headers["x-interns-trace-id"]
    assert (trace.tenant_id, trace.agent_id, trace.session_id) == ("acme", "weather-bot", "s-42")
    assert trace.request.messages[1].content == "What's the weather in Lima tomorrow?"
    assert trace.response.message.tool_calls[0].function.name == "GetWeather"


async def test_without_headers_agent_and_session_come_from_the_body_metadata(served):
    body = weather_body(metadata={"agent_id": "planner", "session_id": "s-7"}, user="u-1")
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=body, headers=no_agent_headers())
    assert answer.status_code == 200
    (trace,) = served.publisher.traces
    assert (trace.agent_id, trace.session_id) == ("planner", "s-7")


async def test_the_openai_user_field_is_not_taken_for_a_session(served):
    async with served.http() as http:
        await http.post(
            "/v1/chat/completions", json=weather_body(user="u-1"), headers=no_agent_headers()
        )
    assert served.publisher.traces[0].session_id == ""


async def test_streaming_sends_openai_chunks_that_rebuild_the_tool_call(served):
    body = weather_body("Oslo", stream=True, stream_options={"include_usage": True})
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=body)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    *payloads, done = sse_events(answer.text)
    assert done == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"

    calls: dict[int, dict] = {}
    for chunk in chunks[:-1]:
        for fragment in chunk["choices"][0]["delta"].get("tool_calls", []):
            call = calls.setdefault(fragment["index"], {"function": {"arguments": ""}})
            call["id"], call["type"] = fragment["id"], fragment["type"]
            call["function"]["name"] = fragment["function"]["name"]
            call["function"]["arguments"] += fragment["function"]["arguments"]
    assert list(calls.values()) == [recorded_call("Oslo")]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0

    (trace,) = served.publisher.traces
    assert trace.trace_id == answer.headers["x-interns-trace-id"]
    assert (trace.agent_id, trace.session_id) == ("weather-bot", "s-42")
    assert trace.response.message.tool_calls[0].function.name == "GetWeather"


async def test_without_include_usage_the_stream_has_no_usage_chunk(served):
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=weather_body(stream=True))
    *payloads, done = sse_events(answer.text)
    assert done == "[DONE]"
    assert all("usage" not in json.loads(payload) for payload in payloads)


async def test_the_openai_sdk_gets_the_tool_call(served):
    client = served.sdk()
    completion = await client.chat.completions.create(**weather_body("Kyoto"))

    call = completion.choices[0].message.tool_calls[0]
    assert call.id == "call_Kyoto" and call.function.name == "GetWeather"
    assert json.loads(call.function.arguments) == {"city": "Kyoto", "date": "2019-03-02"}
    assert completion.choices[0].finish_reason == "tool_calls"
    assert served.publisher.traces[0].session_id == "s-42"


async def test_the_openai_sdk_streams_the_tool_call(served):
    client = served.sdk()
    stream = await client.chat.completions.create(
        **weather_body("Quito"), stream=True, stream_options={"include_usage": True}
    )
    arguments, names, finish_reasons, usage = "", [], [], None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish_reasons.append(choice.finish_reason)
            for call in choice.delta.tool_calls or []:
                names.append(call.function.name)
                arguments += call.function.arguments or ""
    assert names == ["GetWeather"]
    assert json.loads(arguments) == {"city": "Quito", "date": "2019-03-02"}
    assert finish_reasons[-1] == "tool_calls"
    assert usage.total_tokens > 0


async def test_the_openai_sdk_stream_helper_assembles_the_completion(served):
    # The SDK's own accumulator is strict about the chunk format (index, id, type).
    client = served.sdk()
    async with client.chat.completions.stream(**weather_body("Paris")) as stream:
        final = await stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_Paris", "GetWeather")
    assert json.loads(call.function.arguments)["city"] == "Paris"


async def test_the_models_list_names_the_expert(served):
    models = await served.sdk().models.list()
    assert [model.id for model in models.data] == ["replay"]


def _with(body: dict, path: tuple, value) -> dict:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "param"),
    [
        (("messages",), "hello", "messages"),
        (("messages",), [], "messages"),
        (("messages", 1, "role"), 5, "messages[1].role"),
        (("messages", 1, "role"), "robot", "messages[1].role"),
        (("messages", 1, "content"), [{"type": "image_url"}], "messages[1].content"),
        (("tools", 0, "function", "parameters"), "not a schema", "tools[0].function.parameters"),
        (("tool_choice",), "NoSuchTool", "tool_choice"),
        (("tool_choice",), {"type": "function"}, "tool_choice"),
        (("response_format",), {"type": "yaml"}, "response_format.type"),
        (("temperature",), "hot", "temperature"),
        (("max_tokens",), -5, "max_tokens"),
        (("n",), 2, "n"),
        (("metadata",), {"step": 3}, "metadata.step"),
    ],
)
async def test_a_malformed_body_is_refused_naming_the_field(served, path, value, param):
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=_with(weather_body(), path, value))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == param
    assert error["message"].startswith(f"{param}:")
    assert error["type"] == "invalid_request_error"
    assert served.publisher.traces == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"model": "replay", "messages": [', "request body is not valid JSON"),
        (b"", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"model": "replay"}', "messages: Field required"),
    ],
)
async def test_a_body_that_is_not_a_request_is_refused(served, raw, message):
    async with served.http() as http:
        answer = await http.post(
            "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(message)


async def test_the_sdk_reads_the_refusal_and_its_param(served):
    body = _with(weather_body(), ("messages", 1, "role"), "robot")
    with pytest.raises(openai.BadRequestError) as refused:
        await served.sdk().chat.completions.create(**body)
    assert refused.value.status_code == 400
    assert refused.value.param == "messages[1].role"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_timeout_header_bounds_the_call_and_gives_504(mode, stream):
    async def slow_expert(_: Request) -> Response:
        await asyncio.sleep(5)
        return Response(status_code=500)

    slow = Starlette(routes=[Route("/v1/chat/completions", slow_expert, methods=["POST"])])
    async with (
        expert_serving(slow) as expert,
        serving(expert, mode=mode) as served,
        served.http() as client,
    ):
        started = time.monotonic()
        answer = await client.post(
            "/v1/chat/completions",
            json=weather_body(stream=stream),
            headers={"x-interns-timeout-s": "0.3"},
        )
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "deadline_exceeded"
    assert time.monotonic() - started < 3
    (trace,) = served.publisher.traces
    assert trace.status == "error" and trace.error.startswith("DEADLINE_EXCEEDED")


async def test_a_bad_timeout_header_is_refused(served):
    async with served.http() as http:
        answer = await http.post(
            "/v1/chat/completions", json=weather_body(), headers={"x-interns-timeout-s": "soon"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "x-interns-timeout-s"


async def test_an_oversized_body_is_refused_before_it_is_read(served):
    sent: list[int] = []

    async def upload() -> AsyncIterator[bytes]:
        for i in range(1000):
            sent.append(i)
            yield b" " * 1024

    async with served.http() as http:
        declared = await http.post(
            "/v1/chat/completions",
            content=upload(),
            headers={"content-length": str(1000 * 1024)},
        )
        assert declared.status_code == 413
        assert sent == []  # refused on its declared length alone

        chunked = await http.post("/v1/chat/completions", content=upload())
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "request_too_large"
    assert len(sent) < 100  # refused once over the limit, not after the whole upload
    assert served.publisher.traces == []


async def test_an_unknown_path_answers_in_openai_error_shape(served):
    async with served.http() as http:
        answer = await http.post("/v1/completions", json={"prompt": "hi"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


async def test_a_missing_or_wrong_api_key_is_unauthenticated(served):
    async with served.http() as http:
        answer = await http.post(
            "/v1/chat/completions", json=weather_body(), headers={"authorization": ""}
        )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"
    with pytest.raises(openai.AuthenticationError):
        await served.sdk(api_key="sk-wrong").chat.completions.create(**weather_body())


async def test_a_tenant_over_its_rate_limit_gets_429(weather_log):
    async with (
        replay_expert(weather_log) as expert,
        serving(expert, RateLimit(rps=0.001, burst=1)) as served,
    ):
        client = served.sdk()
        await client.chat.completions.create(**weather_body())
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(**weather_body())
    assert limited.value.code == "resource_exhausted"


async def test_a_conversation_the_expert_cannot_answer_is_404(served):
    body = _with(weather_body(), ("messages", 1, "content"), "Something nobody recorded")
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=body)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("stream", [False, True])
async def test_when_the_router_is_down_the_call_fails_503_and_is_traced(served_remotely, stream):
    served = served_remotely
    await served.router.__aexit__(None, None, None)
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=weather_body(stream=stream))
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "unavailable"
    assert served.publisher.traces[-1].status == "error"


async def first_words_then_a_lost_connection() -> AsyncIterator[bytes]:
    first = {
        "id": "c1",
        "model": "replay",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Checking"}}],
    }
    yield f"data: {json.dumps(first)}\n\n".encode()
    # The server drops the connection before the end of the chunked body.
    raise ConnectionResetError("connection reset by the expert")


@pytest.fixture(params=MODES)
async def served_by_a_failing_expert(request):
    """An expert that sends its first words, then loses the connection."""

    def chat(_: Request) -> StreamingResponse:
        return StreamingResponse(
            first_words_then_a_lost_connection(), media_type="text/event-stream"
        )

    failing = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    async with expert_serving(failing) as expert, serving(expert, mode=request.param) as served:
        yield served


async def test_a_failure_mid_stream_ends_it_with_an_error_event_and_no_done(
    served_by_a_failing_expert,
):
    served = served_by_a_failing_expert
    async with served.http() as http:
        answer = await http.post("/v1/chat/completions", json=weather_body(stream=True))

    assert answer.status_code == 200  # the first words were already on their way
    events = sse_events(answer.text)
    assert "[DONE]" not in events
    *chunks, last = [json.loads(event) for event in events]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Checking"
    assert last["error"]["code"] == "unavailable"
    assert "expert" in last["error"]["message"]
    assert served.publisher.traces[-1].status == "error"


async def test_the_sdk_raises_the_error_sent_mid_stream(served_by_a_failing_expert):
    stream = await served_by_a_failing_expert.sdk().chat.completions.create(
        **weather_body(), stream=True
    )
    with pytest.raises(openai.APIError, match="expert"):
        async for _ in stream:
            pass


async def test_the_http_server_serves_the_sdk_over_a_real_socket(weather_log):
    async with replay_expert(weather_log) as expert, serving(expert) as served:
        server = HttpServer(served.gateway, "127.0.0.1", 0, MAX_BODY_BYTES, ["replay"])
        async with server:
            client = openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{server.port}/v1", api_key=API_KEY, max_retries=0
            )
            stream = await client.chat.completions.create(**weather_body("Lima"), stream=True)
            names = [
                call.function.name
                async for chunk in stream
                for choice in chunk.choices
                for call in choice.delta.tool_calls or []
            ]
            await client.close()
    assert names == ["GetWeather"]
