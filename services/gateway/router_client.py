"""How the gateway reaches the router (GATEWAY_ROUTER): over gRPC (`RemoteRouter`, the
router service at ROUTER_ADDR, for scale-out deployments), or in its own process
(`EmbeddedRouter`, the router's serving core called directly: no protobuf encoding and
decoding, no second server, no network hop). Both keep the call's deadline and fail the
same way, with `RouteFailed` carrying the gRPC status a remote router would have sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from interns.api.v1 import chat_pb2, router_pb2, router_pb2_grpc
from interns.common.logging import get_logger
from interns.common.metrics import RPC_LATENCY, RPC_REQUESTS
from interns.router.expert import ExpertError
from interns.router.serving import Router

log = get_logger(__name__)

Answer = tuple[chat_pb2.ChatCompletionOutput, chat_pb2.RouteDecision]
Chunk = router_pb2.StreamRouteChatCompletionResponse
# What a gRPC client sees when the deadline passes.
DEADLINE_DETAILS = "Deadline Exceeded"


class RouteFailed(Exception):
    """The router gave no answer: the gRPC status and message the client gets."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


class RouterClient(Protocol):
    """The router as the gateway calls it."""

    async def complete(
        self,
        trace_id: str,
        metadata: chat_pb2.RequestMetadata,
        chat: chat_pb2.ChatCompletionInput,
        deadline_s: float,
    ) -> Answer: ...

    def stream(
        self,
        trace_id: str,
        metadata: chat_pb2.RequestMetadata,
        chat: chat_pb2.ChatCompletionInput,
        deadline_s: float,
    ) -> AsyncIterator[Chunk]: ...


class RemoteRouter:
    """The router service over gRPC."""

    def __init__(self, stub: router_pb2_grpc.RouterServiceStub):
        self._stub = stub

    async def complete(self, trace_id, metadata, chat, deadline_s) -> Answer:
        request = router_pb2.RouteChatCompletionRequest(
            trace_id=trace_id, metadata=metadata, input=chat
        )
        try:
            answer = await self._stub.RouteChatCompletion(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as error:
            raise _failed(error) from None
        return answer.output, answer.route

    async def stream(self, trace_id, metadata, chat, deadline_s) -> AsyncIterator[Chunk]:
        request = router_pb2.StreamRouteChatCompletionRequest(
            trace_id=trace_id, metadata=metadata, input=chat
        )
        try:
            async for chunk in self._stub.StreamRouteChatCompletion(request, timeout=deadline_s):
                yield chunk
        except grpc.aio.AioRpcError as error:
            raise _failed(error) from None


def _failed(error: grpc.aio.AioRpcError) -> RouteFailed:
    return RouteFailed(error.code(), error.details() or "router failed")


class _RpcMetrics:
    """The router service's per-call metrics (`interns_rpc_*{service="router"}`), kept by
    the embedded router so that dashboards read the same series in either mode. The
    children of each label set are looked up once."""

    def __init__(self, method: str):
        self._method = method
        self._latency = RPC_LATENCY.labels("router", method)
        self._counts: dict[grpc.StatusCode, object] = {}

    def observe(self, code: grpc.StatusCode, started: float) -> None:
        counter = self._counts.get(code)
        if counter is None:
            counter = self._counts[code] = RPC_REQUESTS.labels("router", self._method, code.name)
        counter.inc()
        self._latency.observe(time.perf_counter() - started)


class EmbeddedRouter:
    """The router's serving core in the gateway's process (`interns.router.core`), called
    within the call's deadline. The router works on the gateway's messages, which neither
    side changes after the call."""

    def __init__(self, router: Router):
        self._router = router
        self._complete_metrics = _RpcMetrics("RouteChatCompletion")
        self._stream_metrics = _RpcMetrics("StreamRouteChatCompletion")

    async def complete(self, trace_id, metadata, chat, deadline_s) -> Answer:
        started = time.perf_counter()
        code = grpc.StatusCode.CANCELLED
        try:
            async with asyncio.timeout(deadline_s) as deadline:
                answer = await self._router.complete(chat, metadata, trace_id, deadline_s)
            code = grpc.StatusCode.OK
            return answer
        except BaseException as error:
            failure = _embedded_failure(error, deadline.expired())
            if failure is None:
                raise
            code = failure.code
            raise failure from None
        finally:
            self._complete_metrics.observe(code, started)

    async def stream(self, trace_id, metadata, chat, deadline_s) -> AsyncIterator[Chunk]:
        # The deadline bounds the waits for the router's next chunk, counted from the
        # start of the call as a gRPC deadline is; a timeout around the whole iteration
        # would cancel whatever the caller does between two chunks instead.
        started = time.perf_counter()
        code = grpc.StatusCode.CANCELLED
        expires = asyncio.get_running_loop().time() + deadline_s
        chunks = self._router.stream(chat, metadata, trace_id, deadline_s)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(expires) as deadline:
                        chunk = await anext(chunks, None)
                except BaseException as error:
                    failure = _embedded_failure(error, deadline.expired())
                    if failure is None:
                        raise
                    code = failure.code
                    raise failure from None
                if chunk is None:
                    code = grpc.StatusCode.OK
                    return
                yield chunk
        finally:
            await chunks.aclose()
            self._stream_metrics.observe(code, started)


def _embedded_failure(error: BaseException, expired: bool) -> RouteFailed | None:
    """The failure a remote router would have given for `error`; None for a cancellation
    of the caller's own (it propagates)."""
    if expired:
        return RouteFailed(grpc.StatusCode.DEADLINE_EXCEEDED, DEADLINE_DETAILS)
    if isinstance(error, ExpertError):
        return RouteFailed(error.code, str(error))
    if isinstance(error, Exception):
        # A remote router's server answers UNKNOWN to a handler that raised.
        log.exception("router failed")
        return RouteFailed(grpc.StatusCode.UNKNOWN, f"router failed: {error!r}")
    return None
