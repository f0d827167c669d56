"""The gateway's gRPC transport: translates GatewayService calls to plain calls."""

from __future__ import annotations

import grpc

from interns.api.v1 import gateway_pb2_grpc
from interns.gateway.calls import CallContext, Gateway, GatewayError


def call_context(context: grpc.aio.ServicerContext) -> CallContext:
    """The API key from `authorization: Bearer <key>` metadata, and the client's deadline."""
    metadata = dict(context.invocation_metadata() or ())
    authorization = metadata.get("authorization", "")
    api_key = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    return CallContext(api_key=api_key, deadline_s=context.time_remaining())


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    async def CreateChatCompletion(self, request, context):
        try:
            return await self._gateway.complete(request, call_context(context))
        except GatewayError as error:
            await context.abort(error.code, error.message)

    async def StreamChatCompletion(self, request, context):
        try:
            async for chunk in self._gateway.stream(request, call_context(context)):
                yield chunk
        except GatewayError as error:
            await context.abort(error.code, error.message)
