"""Requests whose bytes are not their message: a clear INVALID_ARGUMENT for the client.

grpc's own handling of a request that fails to parse is status UNKNOWN ("Unexpected
<class 'DecodeError'>") and an error with a traceback in the server's log for every such
call. This interceptor gives the handler a deserializer that cannot raise: what does not
parse is refused with INVALID_ARGUMENT naming the expected message, before the servicer
runs. Found by the gateway's fuzz tests (`tests/fuzz/test_gateway.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class Undecodable:
    """Stands in for a request that did not parse; never reaches a servicer."""

    def __init__(self, message: str):
        self.message = message


def tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize`, returning an Undecodable instead of raising."""
    owner = getattr(deserialize, "__self__", None)
    name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "the request message")

    def read(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as error:
            return Undecodable(f"request is not a valid {name}: {error}")

    return read


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Refuses with INVALID_ARGUMENT the unary-request calls whose request does not parse."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        read = tolerant(handler.request_deserializer)
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, read, handler.response_serializer)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request, context):
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(stream, read, handler.response_serializer)
        return handler
