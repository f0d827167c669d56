"""gRPC server bootstrap shared by every gRPC service: health, reflection, metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from interns.common import tracing
from interns.common.grpc_decoding import RequestDecodingInterceptor
from interns.common.metrics import RPC_LATENCY, RPC_REQUESTS

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts calls and times them by method and status code (unary and streaming)."""

    def __init__(self, service: str):
        self._service = service

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        service = self._service

        def observe(context, started: float) -> None:
            code = context.code() if hasattr(context, "code") else None
            name = code.name if isinstance(code, grpc.StatusCode) else "OK"
            RPC_REQUESTS.labels(service, method, name).inc()
            RPC_LATENCY.labels(service, method).observe(time.perf_counter() - started)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                started = time.perf_counter()
                try:
                    return await inner(request, context)
                finally:
                    observe(context, started)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request, context):
                started = time.perf_counter()
                try:
                    async for item in inner_stream(request, context):
                        yield item
                finally:
                    observe(context, started)

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


class GrpcServer:
    """A `grpc.aio` server with the standard health service and reflection.

    Use as an async context manager; on exit it stops taking calls, marks itself
    NOT_SERVING and lets in-flight calls finish within `grace` seconds. With `credentials`
    (from `interns.common.tls.server_credentials`) it serves TLS only, else plaintext;
    when tracing is on (`interns.common.tracing`) each call gets a server span.
    """

    def __init__(
        self,
        service: str,
        address: str,
        service_names: Iterable[str],
        grace: float = 10.0,
        credentials: grpc.ServerCredentials | None = None,
    ):
        self.service_names = list(service_names)
        self.server = grpc.aio.server(
            interceptors=[
                *tracing.server_interceptors(),
                MetricsInterceptor(service),
                RequestDecodingInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.tls = credentials is not None
        self.port = (
            self.server.add_secure_port(address, credentials)
            if credentials is not None
            else self.server.add_insecure_port(address)
        )
        self._grace = grace

    async def __aenter__(self) -> GrpcServer:
        await self.server.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self._grace)
