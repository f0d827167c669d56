"""OpenTelemetry tracing across the gRPC and Kafka hops, off unless configured.

`configure_tracing(service)` turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT is set and
the OTLP exporter package (`opentelemetry-exporter-otlp-proto-grpc`) is installed; tests
pass an exporter of their own. When it is on:

- every `GrpcServer` gets the OpenTelemetry server interceptor and every channel built by
  `interns.common.tls` the client interceptors (the W3C `traceparent` travels in the
  call's metadata);
- every `KafkaBroker` built by `interns.common.tls.kafka_broker` gets FastStream's
  telemetry middleware: a publish writes `traceparent` into the record's headers and a
  consumer's span is the child of the publisher's;
- plain aiokafka producers add `kafka_headers()` to their records.

When it is off (the default) nothing is added: no interceptor, no middleware, no header,
so a call costs what it cost before.
"""

from __future__ import annotations

import os
from typing import Any

from interns.common.logging import get_logger

log = get_logger(__name__)

_provider: Any = None


def enabled() -> bool:
    """Whether this process records spans."""
    return _provider is not None


def configure_tracing(service: str, exporter: Any = None) -> bool:
    """Sets up the tracer provider of `service` (resource `service.name=interns-<service>`)
    when OTEL_EXPORTER_OTLP_ENDPOINT is set, or `exporter` is given; returns whether
    tracing is on. Call it before building servers, channels and brokers."""
    global _provider
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed:"
                " tracing stays off"
            )
            return False
        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": f"interns-{service}"}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def reset_tracing() -> None:
    """Turns tracing off again (tests); spans already ended are flushed first."""
    global _provider
    if _provider is not None:
        _provider.force_flush()
    _provider = None


def server_interceptors() -> list:
    """The `grpc.aio` server interceptors tracing adds: none when it is off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider)]


def client_interceptors() -> list:
    """The `grpc.aio` client interceptors tracing adds: none when it is off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider))


def kafka_middlewares() -> tuple:
    """FastStream middlewares of a traced `KafkaBroker`: none when tracing is off."""
    if _provider is None:
        return ()
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    return (KafkaTelemetryMiddleware(tracer_provider=_provider),)


def kafka_headers() -> list[tuple[str, bytes]]:
    """Headers that carry the current trace context (W3C `traceparent`) in a Kafka record
    sent by a plain aiokafka producer; empty when tracing is off."""
    if _provider is None:
        return []
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]
