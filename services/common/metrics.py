"""Prometheus metrics with the same names and labels in every service, declared here once.

Every metric is named `interns_*` and carries `service` (the process that counts it:
gateway, router, trace-collector, miner, trainer, trainer-worker, deployer, expert). Other
labels have one spelling everywhere: `task` (task id), `model` (Triton model name),
`topic`, `method`, `code`, `target`, `reason`, `outcome`, `kind`, `stage`, `partition`.
docs/metrics.md lists them for dashboards; tests/common/test_metrics_catalog.py keeps the
two in step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

# --- calls ------------------------------------------------------------------------------

RPC_REQUESTS = Counter(
    "interns_rpc_requests_total", "gRPC calls handled", ["service", "method", "code"]
)
RPC_LATENCY = Histogram(
    "interns_rpc_latency_seconds",
    "gRPC call latency",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CALLS_REFUSED = Counter(
    "interns_calls_refused_total",
    "Calls refused before routing (no or bad API key, over the rate limit, too large, invalid)",
    ["service", "reason"],
)

# --- routing ----------------------------------------------------------------------------

ROUTED_CALLS = Counter(
    "interns_routed_calls_total", "Calls routed, by target", ["service", "target", "reason"]
)
ROUTE_SHARE = Gauge(
    "interns_route_share",
    "Share of a task's calls the routing table gives its intern (0 expert or shadow, the "
    "canary share, 1 full)",
    ["service", "task"],
)
FALLBACKS = Counter(
    "interns_fallbacks_total",
    "Calls meant for an intern that the expert answered (intern failed, slow or unchecked)",
    ["service", "task", "model"],
)
AGREEMENT = Gauge(
    "interns_agreement",
    "Live agreement with the expert of the version in rollout, over its current stage",
    ["service", "task", "model", "stage"],
)

# --- Kafka ------------------------------------------------------------------------------

EVENTS_PUBLISHED = Counter(
    "interns_events_published_total", "Kafka events published", ["service", "topic"]
)
EVENTS_CONSUMED = Counter(
    "interns_events_consumed_total", "Kafka events consumed", ["service", "topic", "outcome"]
)
CONSUMER_LAG = Gauge(
    "interns_consumer_lag",
    "Records between a consumer's position and the end of the partition",
    ["service", "topic", "partition"],
)

# --- traces -----------------------------------------------------------------------------

TRACE_SPILL_DEPTH = Gauge(
    "interns_trace_spill_depth", "Trace events waiting to be sent to Kafka", ["service"]
)
TRACES_DROPPED = Counter(
    "interns_traces_dropped_total",
    "Trace events lost: memory full while the disk could not keep up, spill at its bound, "
    "or a trace Kafka can never take (too large, corrupt on disk)",
    ["service"],
)
TRACES_SPILLED = Counter(
    "interns_traces_spilled_total", "Trace events written to the local spill", ["service"]
)
TRACES_REPLAYED = Counter(
    "interns_traces_replayed_total",
    "Spilled trace events that Kafka acknowledged (and so left the spill)",
    ["service"],
)
TRACES_HELD = Gauge(
    "interns_traces_held",
    "Trace events Kafka acknowledged that the trace-collector has not yet committed",
    ["service"],
)
TRACES_RESENT = Counter(
    "interns_traces_resent_total",
    "Acknowledged trace events sent again because Kafka may have lost them",
    ["service"],
)
TRACES_RELEASED_UNCONFIRMED = Counter(
    "interns_traces_released_unconfirmed_total",
    "Acknowledged trace events no longer held, before the trace-collector confirmed them "
    "(the hold was full)",
    ["service"],
)
TRACES_STORED = Counter(
    "interns_traces_stored_total", "Traces written to the database", ["service"]
)
PII_REDACTED = Counter(
    "interns_pii_redacted_total",
    "Personal data and secrets replaced by placeholders before storage, by kind",
    ["service", "kind"],
)
TRACES_MINED = Counter("interns_traces_mined_total", "Traces read by the miner", ["service"])

# --- training ---------------------------------------------------------------------------

TRAINING_PROGRESS = Gauge(
    "interns_training_progress",
    "Share of its steps done by the task's latest training job (1 when it ended)",
    ["service", "task"],
)

# --- replay expert ----------------------------------------------------------------------

EXPERT_REQUESTS = Counter(
    "interns_expert_requests_total",
    "Chat-completion requests to the replay expert, by outcome",
    ["service", "outcome"],
)
EXPERT_RECORDS = Gauge(
    "interns_expert_workload_records",
    "Conversations the replay expert can answer",
    ["service"],
)


def record_training_progress(service: str, task: str, status: str, step: int, total: int) -> None:
    """Sets `interns_training_progress` of `task` from a job's progress event."""
    if status == "succeeded":
        share = 1.0
    elif total > 0:
        share = min(step / total, 1.0)
    else:
        share = 0.0
    TRAINING_PROGRESS.labels(service, task).set(share)


async def record_consumer_lag(service: str, consumers: Iterable) -> None:
    """Sets `interns_consumer_lag` for each partition assigned to `consumers`
    (aiokafka consumers): the partition's end offset minus the consumer's position."""
    for consumer in consumers:
        assigned = list(consumer.assignment())
        if not assigned:
            continue
        ends = await consumer.end_offsets(assigned)
        for partition in assigned:
            with contextlib.suppress(Exception):  # a revoked partition has no position
                position = await consumer.position(partition)
                CONSUMER_LAG.labels(service, partition.topic, str(partition.partition)).set(
                    max(ends.get(partition, position) - position, 0)
                )


async def watch_consumer_lag(service: str, broker, interval_s: float = 15.0) -> None:
    """Runs forever: every `interval_s` seconds records the lag of each of `broker`'s
    subscribers (a FastStream `KafkaBroker`). Meant to run as a task beside the broker."""
    while True:
        await asyncio.sleep(interval_s)
        with contextlib.suppress(Exception):  # lag is advisory; never stop the service
            await record_consumer_lag(service, kafka_consumers(broker))


@contextlib.asynccontextmanager
async def consumer_lag_watched(service: str, broker, interval_s: float = 15.0):
    """Within the block, `watch_consumer_lag` runs for `broker`'s subscribers."""
    task = asyncio.create_task(watch_consumer_lag(service, broker, interval_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def kafka_consumers(broker) -> list:
    """The aiokafka consumers of a started FastStream `KafkaBroker`'s subscribers."""
    found = []
    for subscriber in getattr(broker, "subscribers", []):
        consumer = getattr(subscriber, "consumer", None)
        if consumer is not None and hasattr(consumer, "assignment"):
            found.append(consumer)
    return found
