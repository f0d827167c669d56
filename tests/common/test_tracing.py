"""OpenTelemetry tracing across a gRPC hop and a Kafka hop (real gRPC server, real Tansu
broker, the SDK's in-memory exporter), and nothing added to a call when tracing is off."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from interns.common import tracing
from interns.common.grpc_server import GrpcServer
from interns.common.settings import ServiceSettings
from interns.common.tls import aio_channel, kafka_broker
from tests.common.tansu import tansu_broker

TOPIC = "interns.test-hops.v1"


class Hop(BaseModel):
    note: str


@pytest.fixture
def exporter():
    spans = InMemorySpanExporter()
    assert tracing.configure_tracing("test", exporter=spans)
    yield spans
    tracing.reset_tracing()


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_a_call_through_grpc_and_kafka_is_one_trace(exporter, tmp_path):
    with tansu_broker(tmp_path / "tansu.log") as bootstrap:
        await create_topic(bootstrap)
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        producer_side = kafka_broker(settings, "interns-test-producer")
        consumer_side = kafka_broker(settings, "interns-test-consumer")
        publisher = producer_side.publisher(TOPIC)
        received: asyncio.Queue = asyncio.Queue()

        @consumer_side.subscriber(TOPIC, group_id="interns-test", auto_offset_reset="earliest")
        async def on_hop(hop: Hop) -> None:
            await received.put((hop.note, trace.get_current_span().get_span_context()))

        async def call(request: bytes, context) -> bytes:
            await publisher.publish(Hop(note=request.decode()).model_dump(mode="json"))
            return b"published"

        server = GrpcServer("test", "127.0.0.1:0", [], grace=0)
        server.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "interns.test.Hops", {"Call": grpc.unary_unary_rpc_method_handler(call)}
                ),
            )
        )
        async with producer_side, consumer_side, server:
            await producer_side.start()
            await consumer_side.start()
            async with aio_channel(f"127.0.0.1:{server.port}", settings) as channel:
                reply = await channel.unary_unary("/interns.test.Hops/Call")(b"hello", timeout=10)
            assert reply == b"published"
            note, consumer_context = await asyncio.wait_for(received.get(), 30)
    assert note == "hello"

    spans = exporter.get_finished_spans()
    by_kind = {kind: [s for s in spans if s.kind == kind] for kind in SpanKind}
    client, server_span = by_kind[SpanKind.CLIENT], by_kind[SpanKind.SERVER]
    producer, consumer = by_kind[SpanKind.PRODUCER], by_kind[SpanKind.CONSUMER]
    assert client and server_span and producer and consumer, [(s.name, s.kind) for s in spans]
    trace_ids = {s.context.trace_id for s in [*client, *server_span, *producer, *consumer]}
    assert trace_ids == {client[0].context.trace_id}, "the hops are not one trace"
    # The handler ran inside the consumer's span, itself in the caller's trace.
    assert consumer_context.trace_id == client[0].context.trace_id
    # The server span is the client's child: the context crossed the gRPC hop.
    assert server_span[0].parent.span_id == client[0].context.span_id


def test_kafka_headers_carry_the_current_trace(exporter):
    with trace.get_tracer_provider().get_tracer("test").start_as_current_span("send") as span:
        headers = dict(tracing.kafka_headers())
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].decode().split("-")[1] == trace_id


def test_tracing_off_adds_nothing_to_a_call():
    assert not tracing.enabled()
    assert tracing.server_interceptors() == []
    assert tracing.client_interceptors() == []
    assert tracing.kafka_middlewares() == ()
    assert tracing.kafka_headers() == []
    # Without an OTLP endpoint, configuring does not turn tracing on.
    assert not tracing.configure_tracing("test")
    assert not tracing.enabled()


class TraceReceiver:
    """An OTLP/gRPC trace receiver (what an OpenTelemetry Collector listens with)."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        received = self.requests = []

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 (the generated name)
                received.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")


def test_spans_go_to_the_otlp_endpoint_when_one_is_set(monkeypatch):
    receiver = TraceReceiver()
    receiver.server.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        assert tracing.configure_tracing("router")
        with tracing._provider.get_tracer("test").start_as_current_span("route a call"):
            pass
        tracing.reset_tracing()  # flushes the batch
    finally:
        receiver.server.stop(0)
    exported = [
        (resource.resource, span.name)
        for request in receiver.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [name for _, name in exported] == ["route a call"]
    attributes = {a.key: a.value.string_value for a in exported[0][0].attributes}
    assert attributes["service.name"] == "interns-router"
