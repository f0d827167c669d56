"""The gateway fed malformed and oversized requests by hypothesis, over real sockets: its
gRPC server and its OpenAI-compatible HTTP server (uvicorn), in front of the real router
and the replay expert. Each bad request gets a clear status (gRPC INVALID_ARGUMENT naming
the field, RESOURCE_EXHAUSTED past the transport's limit; HTTP 400 or 413 with OpenAI's
error body) and the next valid call is answered."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import grpc
import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc, router_pb2_grpc
from interns.common.chat import RESPONSE_FORMATS, ROLES, TOOL_CHOICES, input_from_openai
from interns.common.grpc_server import MAX_MESSAGE_BYTES, GrpcServer
from interns.gateway.calls import Admission, Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.gateway.http_api import HttpServer
from interns.gateway.limits import RateLimit, RequestLimits, TenantRateLimiter
from tests.conftest import openai_log_line
from tests.fuzz.payloads import JSON_VALUES, NOT_A_SCALAR
from tests.servers import MemoryAuthenticator, RecordingPublisher, replay_expert, start_router

API_KEY = "ik_fuzz-test-key"
LIMITS = RequestLimits(max_request_bytes=64 * 1024, max_messages=32, max_tools=8)
MAX_BODY_BYTES = 64 * 1024
METHOD = "/interns.api.v1.GatewayService/CreateChatCompletion"


def router_client(channel: grpc.aio.Channel):
    """The gateway's client of a router served over gRPC. The gateway is changing from
    calling the stub to a `RemoteRouter` (it can also embed the router): either works."""
    stub = router_pb2_grpc.RouterServiceStub(channel)
    try:
        from interns.gateway.router_client import RemoteRouter
    except ImportError:
        return stub
    return RemoteRouter(stub)


@dataclass(frozen=True)
class Endpoints:
    grpc_addr: str
    http_url: str


@contextmanager
def gateway_serving(workload) -> Iterator[Endpoints]:
    """Router, gateway (gRPC and HTTP) and the replay expert, served by an event loop of
    their own in a thread, so the tests drive them with blocking clients."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    endpoints: Endpoints | None = None

    async def serve() -> None:
        nonlocal stop, endpoints
        stop = asyncio.Event()
        async with replay_expert(workload) as expert:
            router = await start_router(expert)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
            admission = Admission(
                MemoryAuthenticator({API_KEY: "acme"}),
                TenantRateLimiter(RateLimit(100_000, 100_000)),
                limits=LIMITS,
            )
            gateway = Gateway(router_client(channel), RecordingPublisher(), 10.0, admission)
            server = GrpcServer("gateway", "127.0.0.1:0", ["interns.api.v1.GatewayService"], 1)
            gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
                GatewayServicer(gateway), server.server
            )
            http = HttpServer(gateway, "127.0.0.1", 0, MAX_BODY_BYTES, ["replay"], grace_s=1)
            async with server, http:
                endpoints = Endpoints(f"127.0.0.1:{server.port}", f"http://127.0.0.1:{http.port}")
                ready.set()
                await stop.wait()
            await channel.close()
            await router.__aexit__(None, None, None)

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert ready.wait(30), "the gateway did not start"
    try:
        yield endpoints
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)


@pytest.fixture(scope="module")
def endpoints(weather_log) -> Iterator[Endpoints]:
    with gateway_serving(weather_log) as served:
        yield served


@pytest.fixture(scope="module")
def stub(endpoints) -> Iterator[gateway_pb2_grpc.GatewayServiceStub]:
    # No client-side limit on what is sent: the server's limits are under test.
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(endpoints.grpc_addr, options=options) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


@pytest.fixture(scope="module")
def http(endpoints) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=endpoints.http_url, headers=headers, timeout=30) as client:
        yield client


def valid_body() -> dict:
    return copy.deepcopy(openai_log_line("Lima", "s-1")["request"])


AUTH = (("authorization", f"Bearer {API_KEY}"),)


def grpc_request(chat: chat_pb2.ChatCompletionInput) -> gateway_pb2.CreateChatCompletionRequest:
    metadata = chat_pb2.RequestMetadata(agent_id="fuzz", session_id="s-1")
    return gateway_pb2.CreateChatCompletionRequest(metadata=metadata, input=chat)


def assert_still_serving_grpc(stub) -> None:
    answer = stub.CreateChatCompletion(
        grpc_request(input_from_openai(valid_body())), metadata=AUTH, timeout=30
    )
    assert answer.output.message.tool_calls[0].function.name == "GetWeather"


def assert_still_serving_http(http: httpx.Client) -> None:
    answer = http.post("/v1/chat/completions", json=valid_body())
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"]


# --- gRPC -------------------------------------------------------------------------------

NOT_JSON_OBJECT = st.text(max_size=60).filter(lambda text: not _is_json_object(text))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@st.composite
def malformed_inputs(draw) -> tuple[chat_pb2.ChatCompletionInput, str]:
    """A request input with one defect, and the field the refusal must name."""
    chat = input_from_openai(valid_body())
    defect = draw(
        st.sampled_from(
            [
                "unknown role",
                "no messages",
                "tool message without id",
                "user calls a tool",
                "tool call without name",
                "tool type",
                "tool without name",
                "repeated tool",
                "tool schema",
                "tool choice",
                "response format",
                "json schema",
                "max tokens",
                "temperature",
                "too many messages",
                "too many tools",
                "too large",
            ]
        )
    )
    last = len(chat.messages) - 1
    if defect == "unknown role":
        chat.messages[last].role = draw(st.text(max_size=20).filter(lambda r: r not in ROLES))
        return chat, f"input.messages[{last}].role"
    if defect == "no messages":
        del chat.messages[:]
        return chat, "input.messages"
    if defect == "tool message without id":
        chat.messages[last].role, chat.messages[last].tool_call_id = "tool", ""
        return chat, f"input.messages[{last}].tool_call_id"
    if defect == "user calls a tool":
        chat.messages[last].tool_calls.add(function=chat_pb2.FunctionCall(name="GetWeather"))
        return chat, f"input.messages[{last}].tool_calls"
    if defect == "tool call without name":
        chat.messages[last].role = "assistant"
        chat.messages[last].tool_calls.add(function=chat_pb2.FunctionCall(arguments="{}"))
        return chat, f"input.messages[{last}].tool_calls[0].function.name"
    if defect == "tool type":
        chat.tools[0].type = draw(
            st.text(min_size=1, max_size=20).filter(lambda t: t != "function")
        )
        return chat, "input.tools[0].type"
    if defect == "tool without name":
        chat.tools[0].function.name = ""
        return chat, "input.tools[0].function.name"
    if defect == "repeated tool":
        chat.tools.append(chat.tools[0])
        return chat, "input.tools[1].function.name"
    if defect == "tool schema":
        chat.tools[0].function.parameters_json = draw(NOT_JSON_OBJECT.filter(bool))
        return chat, "input.tools[0].function.parameters_json"
    if defect == "tool choice":
        names = TOOL_CHOICES | {tool.function.name for tool in chat.tools}
        chat.tool_choice = draw(st.text(min_size=1, max_size=20).filter(lambda c: c not in names))
        return chat, "input.tool_choice"
    if defect == "response format":
        chat.response_format.type = draw(
            st.text(max_size=20).filter(lambda t: t not in RESPONSE_FORMATS)
        )
        return chat, "input.response_format.type"
    if defect == "json schema":
        chat.response_format.type = "json_schema"
        chat.response_format.json_schema_json = draw(NOT_JSON_OBJECT)
        return chat, "input.response_format.json_schema_json"
    if defect == "max tokens":
        chat.max_tokens = draw(st.integers(min_value=-(2**31), max_value=0))
        return chat, "input.max_tokens"
    if defect == "temperature":
        chat.temperature = draw(st.floats(width=32).filter(lambda t: not 0 <= t <= 2))
        return chat, "input.temperature"
    if defect == "too many messages":
        extra = draw(st.integers(LIMITS.max_messages, 4 * LIMITS.max_messages))
        for _ in range(extra):
            chat.messages.add(role="user", content="and again?")
        return chat, "input.messages"
    if defect == "too many tools":
        for number in range(draw(st.integers(LIMITS.max_tools, 4 * LIMITS.max_tools))):
            chat.tools.add(type="function", function=chat_pb2.FunctionDefinition(name=f"t{number}"))
        return chat, "input.tools"
    size = draw(st.integers(LIMITS.max_request_bytes, 16 * LIMITS.max_request_bytes))
    chat.messages[last].content = draw(st.sampled_from(["x", "é", "🙂", "\x00"])) * size
    return chat, "request"


@given(case=malformed_inputs())
def test_a_malformed_grpc_request_is_refused_naming_its_field_and_the_next_is_served(stub, case):
    chat, field = case
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreateChatCompletion(grpc_request(chat), metadata=AUTH, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert refused.value.details().startswith(f"{field}:"), refused.value.details()
    assert_still_serving_grpc(stub)


@given(raw=st.binary(max_size=4096))
def test_bytes_that_are_not_a_request_get_a_clear_status_and_the_next_is_served(
    stub, endpoints, raw
):
    with grpc.insecure_channel(endpoints.grpc_addr) as channel:
        call = channel.unary_unary(METHOD)  # no serializer: the bytes go as they are
        with pytest.raises(grpc.RpcError) as refused:
            call(raw, metadata=AUTH, timeout=30)
    # Bytes that parse as a request are judged as one (no messages...); bytes that do not
    # parse are refused naming the message they should have been (no UNKNOWN, no traceback).
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert refused.value.details().startswith(("input.", "request")), refused.value.details()
    assert_still_serving_grpc(stub)


def test_a_request_past_the_transport_limit_is_resource_exhausted_and_the_next_is_served(stub):
    chat = input_from_openai(valid_body())
    chat.messages[-1].content = "x" * (MAX_MESSAGE_BYTES + 1024)
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreateChatCompletion(grpc_request(chat), metadata=AUTH, timeout=60)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
    assert_still_serving_grpc(stub)


# --- HTTP -------------------------------------------------------------------------------


@st.composite
def malformed_bodies(draw) -> tuple[bytes, int]:
    """A request body with one defect, and the HTTP status it must get."""
    body = valid_body()
    defect = draw(
        st.sampled_from(
            [
                "random bytes",
                "not json",
                "truncated",
                "not an object",
                "wrong type",
                "no messages field",
                "unknown role",
                "tool schema",
                "content parts",
                "too large",
            ]
        )
    )
    text = json.dumps(body)
    if defect == "random bytes":
        raw = draw(st.binary(max_size=2048))
        assume(not _is_json_object(raw.decode("utf-8", errors="replace")))
        return raw, 400
    if defect == "not json":
        raw = draw(st.text(max_size=300))
        assume(not _is_json_object(raw))
        return raw.encode(), 400
    if defect == "truncated":
        return text[: draw(st.integers(0, len(text) - 1))].encode(), 400
    if defect == "not an object":
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return json.dumps(value).encode(), 400
    if defect == "wrong type":
        name = draw(st.sampled_from(["model", "messages", "tools", "temperature", "stream"]))
        return json.dumps(
            {**body, name: draw(NOT_A_SCALAR.filter(lambda v: v != []))}
        ).encode(), 400
    if defect == "no messages field":
        del body["messages"]
        return json.dumps(body).encode(), 400
    if defect == "unknown role":
        # An empty role is read as "assistant" (openai_format), as OpenAI's own API does.
        role = draw(st.text(min_size=1, max_size=20).filter(lambda r: r not in ROLES))
        body["messages"][-1]["role"] = role
        return json.dumps(body).encode(), 400
    if defect == "tool schema":
        body["tools"][0]["function"]["parameters"] = draw(
            JSON_VALUES.filter(lambda v: not isinstance(v, dict) and v is not None)
        )
        return json.dumps(body).encode(), 400
    if defect == "content parts":
        body["messages"][-1]["content"] = [{"type": "image_url", "image_url": {"url": "x"}}]
        return json.dumps(body).encode(), 400
    size = draw(st.integers(MAX_BODY_BYTES + 1, 16 * MAX_BODY_BYTES))
    body["messages"][-1]["content"] = "x" * size
    return json.dumps(body).encode(), 413


def assert_openai_error(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text[:500]
    error = answer.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and isinstance(error["code"], str)
    assert "param" in error


@given(case=malformed_bodies())
def test_a_malformed_http_body_gets_400_or_413_in_openai_shape_and_the_next_is_served(http, case):
    raw, status = case
    answer = http.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert_openai_error(answer, status)
    assert_still_serving_http(http)


@given(timeout=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12))
def test_a_bad_deadline_header_gets_400_naming_it(http, timeout):
    with suppress(ValueError):
        assume(not 0 < float(timeout) < float("inf"))
    assume(timeout == timeout.strip() and timeout.isprintable())
    answer = http.post(
        "/v1/chat/completions", json=valid_body(), headers={"x-interns-timeout-s": timeout}
    )
    assert_openai_error(answer, 400)
    assert answer.json()["error"]["param"] == "x-interns-timeout-s"
