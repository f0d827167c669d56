"""One client call through the gateway: validate, route, trace."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from interns.api.v1 import chat_pb2, gateway_pb2, router_pb2, router_pb2_grpc
from interns.common.chat import (
    InvalidRequest,
    input_to_openai,
    message_to_openai,
    validate_input,
)
from interns.common.events import RouteRecord, TraceRecorded, TraceRequest, TraceResponse
from interns.gateway.traces import TracePublisher


@dataclass(frozen=True)
class CallContext:
    """What a transport knows about a call besides its body."""

    api_key: str = ""
    deadline_s: float | None = None


class GatewayError(Exception):
    """A call refused or failed; `code` is its gRPC status (HTTP maps it to a status code)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Gateway:
    """Forwards validated calls to the router within their deadline and records each one.
    Transport-agnostic: the gRPC and HTTP transports both call `complete` and `stream`."""

    def __init__(
        self,
        router: router_pb2_grpc.RouterServiceStub,
        publisher: TracePublisher,
        default_deadline_s: float,
        default_tenant: str,
    ):
        self._router = router
        self._publisher = publisher
        self._default_deadline_s = default_deadline_s
        self._default_tenant = default_tenant

    def _prepare(self, request, call: CallContext) -> tuple[chat_pb2.RequestMetadata, float]:
        try:
            validate_input(request.input)
        except InvalidRequest as error:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        metadata = chat_pb2.RequestMetadata()
        metadata.CopyFrom(request.metadata)
        metadata.tenant_id = self._default_tenant
        deadline = self._default_deadline_s
        if call.deadline_s is not None:
            deadline = min(call.deadline_s, deadline)
        return metadata, deadline

    async def complete(
        self, request: gateway_pb2.CreateChatCompletionRequest, call: CallContext
    ) -> gateway_pb2.CreateChatCompletionResponse:
        trace_id = uuid.uuid4().hex
        started = time.perf_counter()
        metadata, deadline = self._prepare(request, call)
        routed = router_pb2.RouteChatCompletionRequest(
            trace_id=trace_id, metadata=metadata, input=request.input
        )
        try:
            answer = await self._router.RouteChatCompletion(routed, timeout=deadline)
        except grpc.aio.AioRpcError as error:
            self._record(trace_id, metadata, request.input, started, error=error)
            raise GatewayError(error.code(), error.details() or "router failed") from None
        self._record(trace_id, metadata, request.input, started, answer.output, answer.route)
        return gateway_pb2.CreateChatCompletionResponse(
            trace_id=trace_id, output=answer.output, route=answer.route
        )

    async def stream(
        self, request: gateway_pb2.StreamChatCompletionRequest, call: CallContext
    ) -> AsyncIterator[gateway_pb2.StreamChatCompletionResponse]:
        trace_id = uuid.uuid4().hex
        started = time.perf_counter()
        metadata, deadline = self._prepare(request, call)
        routed = router_pb2.StreamRouteChatCompletionRequest(
            trace_id=trace_id, metadata=metadata, input=request.input
        )
        collected = _StreamCollector()
        try:
            async for chunk in self._router.StreamRouteChatCompletion(routed, timeout=deadline):
                collected.add(chunk)
                yield gateway_pb2.StreamChatCompletionResponse(
                    trace_id=trace_id,
                    id=chunk.id,
                    model=chunk.model,
                    delta=chunk.delta,
                    route=chunk.route if chunk.HasField("route") else None,
                )
        except grpc.aio.AioRpcError as error:
            self._record(trace_id, metadata, request.input, started, error=error)
            raise GatewayError(error.code(), error.details() or "router failed") from None
        self._record(
            trace_id, metadata, request.input, started, collected.output(), collected.route
        )

    def _record(
        self,
        trace_id: str,
        metadata: chat_pb2.RequestMetadata,
        chat: chat_pb2.ChatCompletionInput,
        started: float,
        output: chat_pb2.ChatCompletionOutput | None = None,
        route: chat_pb2.RouteDecision | None = None,
        error: grpc.aio.AioRpcError | None = None,
    ) -> None:
        response = None
        if output is not None:
            response = TraceResponse(
                model=output.model,
                message=message_to_openai(output.message),
                finish_reason=output.finish_reason,
                prompt_tokens=output.usage.prompt_tokens,
                completion_tokens=output.usage.completion_tokens,
            )
        self._publisher.publish(
            TraceRecorded(
                trace_id=trace_id,
                tenant_id=metadata.tenant_id,
                agent_id=metadata.agent_id,
                session_id=metadata.session_id,
                request=TraceRequest.model_validate(input_to_openai(chat, default_model="")),
                response=response,
                route=RouteRecord(
                    target="intern" if route is not None and route.target == "intern" else "expert",
                    model=route.model if route else "",
                    model_version=route.model_version if route else 0,
                    task_id=route.task_id if route else "",
                    reason=route.reason if route else "",
                ),
                status="error" if error is not None else "ok",
                error=f"{error.code().name}: {error.details()}" if error is not None else "",
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )


class _StreamCollector:
    """Rebuilds the whole answer from the streamed deltas, for the trace."""

    def __init__(self) -> None:
        self.route: chat_pb2.RouteDecision | None = None
        self._output = chat_pb2.ChatCompletionOutput()
        self._text: list[str] = []

    def add(self, chunk: router_pb2.StreamRouteChatCompletionResponse) -> None:
        if chunk.HasField("route"):
            self.route = chunk.route
        self._output.id = chunk.id or self._output.id
        self._output.model = chunk.model or self._output.model
        delta = chunk.delta
        self._output.message.role = delta.role or self._output.message.role or "assistant"
        self._text.append(delta.content)
        self._output.message.tool_calls.extend(delta.tool_calls)
        if delta.finish_reason:
            self._output.finish_reason = delta.finish_reason
            self._output.usage.CopyFrom(delta.usage)

    def output(self) -> chat_pb2.ChatCompletionOutput:
        self._output.message.content = "".join(self._text)
        return self._output
