"""The gateway's OpenAI-compatible HTTP transport: an agent built on an OpenAI SDK switches
to Interns by changing its base URL to `http://<gateway>:<GATEWAY_HTTP_PORT>/v1`.

Serves `POST /v1/chat/completions` (a `chat.completion`, or Server-Sent Events of
`chat.completion.chunk` with `"stream": true`) and `GET /v1/models`. Every call goes
through the same `Gateway` as the gRPC API, so both enforce the same keys, limits and
traces.

Reads the headers `Authorization: Bearer <key>`, `x-interns-agent-id`,
`x-interns-session-id` and `x-interns-timeout-s` (the call's deadline in seconds); answers
with `x-interns-trace-id` and `x-interns-route` (`expert` or `intern`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from interns.api.v1 import gateway_pb2
from interns.common.logging import get_logger
from interns.common.ops import UvicornRunner
from interns.gateway.calls import CallContext, Gateway, GatewayError
from interns.gateway.coalesced_writes import CoalescingHttpToolsProtocol
from interns.gateway.openai_format import (
    ApiError,
    ChatCompletionBody,
    ChunkEncoder,
    completion_body,
    error_from_gateway,
    models_body,
)

log = get_logger(__name__)

AGENT_HEADER = "x-interns-agent-id"
SESSION_HEADER = "x-interns-session-id"
TIMEOUT_HEADER = "x-interns-timeout-s"
TRACE_HEADER = "x-interns-trace-id"
ROUTE_HEADER = "x-interns-route"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, or ApiError (413) as soon as it is known to pass `max_bytes`:
    from its declared length before reading anything, else while reading. Starlette has no
    such limit for JSON bodies, and uvicorn none at all."""
    too_large = ApiError(413, f"request body larger than {max_bytes} bytes", "request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def call_context(headers: Headers) -> CallContext:
    """The API key from `Authorization: Bearer <key>`; the deadline from `x-interns-timeout-s`."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    api_key = key.strip() if scheme.lower() == "bearer" else ""
    timeout = headers.get(TIMEOUT_HEADER)
    if timeout is None:
        return CallContext(api_key=api_key)
    try:
        deadline_s = float(timeout)
    except ValueError:
        deadline_s = math.nan
    if not 0 < deadline_s < math.inf:
        raise ApiError(
            400,
            f"{TIMEOUT_HEADER}: must be a positive number of seconds",
            "invalid_argument",
            TIMEOUT_HEADER,
        )
    return CallContext(api_key=api_key, deadline_s=deadline_s)


class FastJSONResponse(JSONResponse):
    """JSONResponse serialized by pydantic's JSON writer (Rust): the same compact UTF-8
    JSON, in a fraction of the time of the `json` module."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + to_json(data) + b"\n\n"


async def _events(
    encoder: ChunkEncoder,
    first: gateway_pb2.StreamChatCompletionResponse,
    chunks: AsyncIterator[gateway_pb2.StreamChatCompletionResponse],
) -> AsyncIterator[bytes]:
    # aclosing: a client that hangs up closes the gateway's stream, and so the router call.
    async with contextlib.aclosing(chunks):
        try:
            for event in encoder.encode(first):
                yield _sse(event)
            async for chunk in chunks:
                for event in encoder.encode(chunk):
                    yield _sse(event)
        except Exception as error:
            # The status line (200) is gone: the error goes as an event of OpenAI's error
            # shape, which OpenAI's SDKs raise as an APIError, and the stream ends without
            # `[DONE]`, so that a client reading only for `[DONE]` still sees the answer is cut.
            if not isinstance(error, GatewayError):
                log.exception("stream failed")
                error = GatewayError(grpc.StatusCode.INTERNAL, "the gateway failed mid-stream")
            yield _sse(error_from_gateway(error).body())
            return
    for event in encoder.finish():
        yield _sse(event)
    yield b"data: [DONE]\n\n"


def _trace_headers(trace_id: str, route: str) -> dict[str, str]:
    return {TRACE_HEADER: trace_id, ROUTE_HEADER: route}


async def _event_stream(
    chunks: AsyncIterator[gateway_pb2.StreamChatCompletionResponse], include_usage: bool
) -> StreamingResponse:
    # The first chunk is awaited before answering, so that a call refused or failed before
    # any answer gets its own HTTP status rather than a 200 stream.
    first = await anext(chunks, None)
    if first is None:
        raise GatewayError(grpc.StatusCode.INTERNAL, "the router answered nothing")
    return StreamingResponse(
        _events(ChunkEncoder(first, include_usage), first, chunks),
        media_type="text/event-stream",
        # No caching and no proxy buffering, so that every chunk reaches the agent at once.
        headers={
            **_trace_headers(first.trace_id, first.route.target),
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        },
    )


def build_http_app(gateway: Gateway, max_body_bytes: int, models: Sequence[str]) -> Starlette:
    """The ASGI app of the OpenAI-compatible API over `gateway`; `models` are listed by
    `GET /v1/models` (the expert's model name at least: clients keep asking for it)."""

    async def chat_completions(request: Request) -> Response:
        body = ChatCompletionBody.parse(await read_body(request, max_body_bytes))
        call = call_context(request.headers)
        metadata = body.request_metadata(
            request.headers.get(AGENT_HEADER, ""), request.headers.get(SESSION_HEADER, "")
        )
        chat = body.chat_input()
        if body.stream:
            streamed = gateway_pb2.StreamChatCompletionRequest(metadata=metadata, input=chat)
            return await _event_stream(gateway.stream(streamed, call), body.include_usage)
        response = await gateway.complete(
            gateway_pb2.CreateChatCompletionRequest(metadata=metadata, input=chat), call
        )
        return FastJSONResponse(
            completion_body(response),
            headers=_trace_headers(response.trace_id, response.route.target),
        )

    async def list_models(_: Request) -> Response:
        return FastJSONResponse(models_body(models))

    async def on_api_error(_: Request, error: ApiError) -> Response:
        return FastJSONResponse(error.body(), status_code=error.status)

    async def on_gateway_error(request: Request, error: GatewayError) -> Response:
        return await on_api_error(request, error_from_gateway(error))

    async def on_http_error(request: Request, error: HTTPException) -> Response:
        code = error.detail.lower().replace(" ", "_")
        return await on_api_error(request, ApiError(error.status_code, error.detail, code))

    async def on_crash(request: Request, _: Exception) -> Response:
        # uvicorn logs the exception; the client still gets an error its SDK can read.
        crash = ApiError(500, "the gateway failed", "internal", kind="server_error")
        return await on_api_error(request, crash)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
        ],
        exception_handlers={
            ApiError: on_api_error,
            GatewayError: on_gateway_error,
            HTTPException: on_http_error,
            Exception: on_crash,
        },
    )


class HttpServer(UvicornRunner):
    """Serves the OpenAI-compatible API on `host:port` inside the service's event loop,
    each response in one socket write (`interns.gateway.coalesced_writes`). On exit it
    takes no new connections and lets calls in flight (streams too) finish within
    `grace_s` seconds, as the gRPC server does."""

    def __init__(
        self,
        gateway: Gateway,
        host: str,
        port: int,
        max_body_bytes: int,
        models: Sequence[str],
        grace_s: float = 10.0,
    ):
        super().__init__(
            build_http_app(gateway, max_body_bytes, models),
            host,
            port,
            grace_s,
            http=CoalescingHttpToolsProtocol,
        )
