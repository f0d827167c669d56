"""Prometheus metrics with the same names and labels in every service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_REQUESTS = Counter(
    "interns_rpc_requests_total", "gRPC calls handled", ["service", "method", "code"]
)
RPC_LATENCY = Histogram(
    "interns_rpc_latency_seconds",
    "gRPC call latency",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_PUBLISHED = Counter(
    "interns_events_published_total", "Kafka events published", ["service", "topic"]
)
EVENTS_CONSUMED = Counter(
    "interns_events_consumed_total", "Kafka events consumed", ["service", "topic", "outcome"]
)
ROUTED_CALLS = Counter(
    "interns_routed_calls_total", "Calls routed, by target", ["service", "target", "reason"]
)
TRACE_SPILL_DEPTH = Gauge(
    "interns_trace_spill_depth", "Trace events waiting to be sent to Kafka", ["service"]
)
TRACES_STORED = Counter(
    "interns_traces_stored_total", "Traces written to the database", ["service"]
)
CALLS_REFUSED = Counter(
    "interns_calls_refused_total",
    "Calls refused before routing (no or bad API key, over the rate limit, too large, invalid)",
    ["service", "reason"],
)
PII_REDACTED = Counter(
    "interns_pii_redacted_total",
    "Personal data and secrets replaced by placeholders before storage, by kind",
    ["kind"],
)
