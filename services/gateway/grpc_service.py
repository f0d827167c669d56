"""The gateway's gRPC transport: translates GatewayService calls to plain calls."""

from __future__ import annotations

from interns.api.v1 import gateway_pb2_grpc
from interns.gateway.calls import Gateway


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    async def CreateChatCompletion(self, request, context):
        return await self._gateway.complete(request, context)

    async def StreamChatCompletion(self, request, context):
        async for chunk in self._gateway.stream(request, context):
            yield chunk
