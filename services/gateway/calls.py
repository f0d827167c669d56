"""One client call through the gateway: admit (size, API key, rate), validate, route, trace."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from interns.api.v1 import chat_pb2, gateway_pb2, router_pb2
from interns.common.chat import InvalidRequest, validate_input
from interns.common.metrics import CALLS_REFUSED
from interns.gateway.auth import Authenticator, KeyStoreUnavailable
from interns.gateway.limits import (
    ChatRequest,
    RequestLimits,
    TenantRateLimiter,
    check_request_limits,
)
from interns.gateway.router_client import RouteFailed, RouterClient
from interns.gateway.trace_events import PendingTrace
from interns.gateway.traces import TracePublisher

MISSING_KEY = "missing API key: send authorization: Bearer <key>"


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


@dataclass(frozen=True)
class Admission:
    """Who may call and how much: the API key check, the rate limit of each tenant and
    the size limits of a request. Without `require_api_key`, a call with no key belongs to
    `default_tenant`; a key that is sent is checked all the same."""

    authenticator: Authenticator
    rate_limiter: TenantRateLimiter
    limits: RequestLimits = RequestLimits()
    require_api_key: bool = True
    default_tenant: str = "default"


class Gateway:
    """Admits calls, forwards them to the router within their deadline and records each
    one. Transport-agnostic: the gRPC and HTTP transports both call `complete` and
    `stream`, and every check lives here so that both enforce the same rules."""

    def __init__(
        self,
        router: RouterClient,
        publisher: TracePublisher,
        default_deadline_s: float,
        admission: Admission,
    ):
        self._router = router
        self._publisher = publisher
        self._default_deadline_s = default_deadline_s
        self._admission = admission

    async def _tenant_of(self, api_key: str) -> str:
        admission = self._admission
        if not api_key:
            if admission.require_api_key:
                raise _refused("unauthenticated", grpc.StatusCode.UNAUTHENTICATED, MISSING_KEY)
            return admission.default_tenant
        try:
            tenant = await admission.authenticator.tenant_of(api_key)
        except KeyStoreUnavailable:
            raise _refused(
                "key_store_unavailable",
                grpc.StatusCode.UNAVAILABLE,
                "cannot check the API key now: the key store is unavailable; retry",
            ) from None
        if tenant is None:
            raise _refused(
                "unauthenticated",
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid API key: unknown or revoked",
            )
        return tenant

    async def _prepare(
        self, request: ChatRequest, call: CallContext
    ) -> tuple[chat_pb2.RequestMetadata, float]:
        """Admits the call or raises GatewayError. The order matters: the size first (it
        bounds the work of the rest), then the key, then the tenant's rate (so that only
        a known tenant's calls use its tokens), then the content."""
        admission = self._admission
        try:
            check_request_limits(request, admission.limits)
        except InvalidRequest as error:
            raise _refused("too_large", grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        tenant = await self._tenant_of(call.api_key)
        if not admission.rate_limiter.try_acquire(tenant):
            limit = admission.rate_limiter.limit_of(tenant).describe()
            raise _refused(
                "rate_limited",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {tenant!r} is over its rate limit of {limit}; slow down and retry",
            )
        try:
            validate_input(request.input)
        except InvalidRequest as error:
            raise _refused("invalid", grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        metadata = chat_pb2.RequestMetadata()
        metadata.CopyFrom(request.metadata)
        # The tenant is the key's, always: a tenant_id the client sent is overwritten, so
        # one tenant cannot write into another's traces or sessions.
        metadata.tenant_id = tenant
        deadline = self._default_deadline_s
        if call.deadline_s is not None:
            deadline = min(call.deadline_s, deadline)
        return metadata, deadline

    async def complete(
        self, request: gateway_pb2.CreateChatCompletionRequest, call: CallContext
    ) -> gateway_pb2.CreateChatCompletionResponse:
        trace_id = uuid.uuid4().hex
        started = time.perf_counter()
        metadata, deadline = await self._prepare(request, call)
        try:
            output, route = await self._router.complete(trace_id, metadata, request.input, deadline)
        except RouteFailed as error:
            self._record(trace_id, metadata, request.input, started, error=error)
            raise GatewayError(error.code, error.details) from None
        self._record(trace_id, metadata, request.input, started, output, route)
        return gateway_pb2.CreateChatCompletionResponse(
            trace_id=trace_id, output=output, route=route
        )

    async def stream(
        self, request: gateway_pb2.StreamChatCompletionRequest, call: CallContext
    ) -> AsyncIterator[gateway_pb2.StreamChatCompletionResponse]:
        trace_id = uuid.uuid4().hex
        started = time.perf_counter()
        metadata, deadline = await self._prepare(request, call)
        collected = _StreamCollector()
        try:
            async for chunk in self._router.stream(trace_id, metadata, request.input, deadline):
                collected.add(chunk)
                yield gateway_pb2.StreamChatCompletionResponse(
                    trace_id=trace_id,
                    id=chunk.id,
                    model=chunk.model,
                    delta=chunk.delta,
                    route=chunk.route if chunk.HasField("route") else None,
                )
        except RouteFailed as error:
            self._record(trace_id, metadata, request.input, started, error=error)
            raise GatewayError(error.code, error.details) from None
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
        error: RouteFailed | None = None,
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        self._publisher.publish(
            PendingTrace(trace_id, metadata, chat, latency_ms, output, route, error)
        )


def _refused(reason: str, code: grpc.StatusCode, message: str) -> GatewayError:
    CALLS_REFUSED.labels("gateway", reason).inc()
    return GatewayError(code, message)


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
