"""A trace publisher for the service tier that keeps what Kafka would receive."""

from __future__ import annotations

from dataclasses import dataclass, field

from interns.common.events import TraceRecorded
from interns.gateway.traces import Trace


@dataclass
class RecordingPublisher:
    """Stands in for the Kafka trace producer: each trace is serialized as the producer
    sends it and read back as the trace-collector does, so that a test sees the event
    exactly as it is stored (and fails on one the collector would reject)."""

    traces: list[TraceRecorded] = field(default_factory=list)

    def publish(self, trace: Trace) -> bool:
        self.traces.append(TraceRecorded.model_validate_json(trace.to_bytes()))
        return True
