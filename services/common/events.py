"""Kafka events: one pydantic model per event, its topic beside it.

These are the contracts downstream consumers rely on: `make asyncapi` documents them in
`docs/asyncapi.yaml`. Topic names carry a version; a breaking change gets a new topic.
Keys keep related events in order (a session's calls, a task's changes).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """Base of every event: a schema version, an id and a time."""

    model_config = ConfigDict(extra="forbid")

    topic: ClassVar[str]
    key_field: ClassVar[str]
    schema_version: Literal[1] = 1
    event_id: str = Field(default_factory=new_id, description="Unique id of this event")
    occurred_at: datetime = Field(default_factory=utc_now, description="When it happened (UTC)")

    def key(self) -> bytes:
        """The Kafka key: events with the same key stay in order."""
        return str(getattr(self, self.key_field)).encode()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


# --- trace recorded ---------------------------------------------------------------------


class FunctionCallRecord(BaseModel):
    """The function of a tool call; `arguments` is the JSON string the model produced."""

    name: str
    arguments: str = ""


class ToolCallRecord(BaseModel):
    """A tool call in OpenAI's shape."""

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCallRecord


class MessageRecord(BaseModel):
    """One chat message in OpenAI's shape."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallRecord] | None = None


class TraceRequest(BaseModel):
    """What the agent asked."""

    model: str = ""
    messages: list[MessageRecord] = Field(min_length=1)
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="OpenAI tool definitions, as sent"
    )
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


class TraceResponse(BaseModel):
    """What was answered."""

    model: str = ""
    message: MessageRecord | None = None
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RouteRecord(BaseModel):
    """Where the call was served and why."""

    target: Literal["expert", "intern"] = "expert"
    model: str = ""
    model_version: int = 0
    task_id: str = ""
    reason: str = ""


class TraceRecorded(Event):
    """One LLM call that passed through the gateway (or was imported from a log)."""

    topic: ClassVar[str] = "interns.traces.v1"
    key_field: ClassVar[str] = "session_id"

    trace_id: str = Field(description="Unique id of the call; the collector is idempotent on it")
    tenant_id: str
    agent_id: str = ""
    session_id: str = ""
    source: str = Field("gateway", description="'gateway', or the file a trace was imported from")
    request: TraceRequest
    response: TraceResponse | None = None
    route: RouteRecord = Field(default_factory=RouteRecord)
    status: Literal["ok", "error"] = "ok"
    error: str = ""
    latency_ms: float = 0.0
    cost_usd: float = 0.0


# --- tasks ------------------------------------------------------------------------------


class TaskChanged(Event):
    """A task was discovered, or its statistics, matcher, merges or splits changed."""

    topic: ClassVar[str] = "interns.tasks.v1"
    key_field: ClassVar[str] = "task_id"

    task_id: str
    change: Literal["discovered", "updated", "merged", "split", "retired"]
    label: str = ""
    signature: str = Field("", description="Structural signature the serve-time matcher uses")
    size: int = 0
    traffic_share: float = 0.0
    output_kind: Literal["tool_call", "json", "text"] = "text"
    consistency: float = 0.0
    replaceability: float = 0.0
    expert_cost_usd: float = 0.0
    related_task_ids: list[str] = Field(
        default_factory=list, description="Tasks merged into or split from this one"
    )
    parent_task_id: str = Field(
        "", description="A sub-task: the task of its signature, which was split into it"
    )
    matcher: dict[str, Any] | None = Field(
        None,
        description="A split signature's task: the serve-time matcher that picks one of its"
        " sub-tasks from a call's last user message (interns.common.task_matcher); None when"
        " the signature is one task",
    )


# --- training ---------------------------------------------------------------------------


class TrainingJobProgress(Event):
    """A training job's state: queued, each progress step, and its end."""

    topic: ClassVar[str] = "interns.training.v1"
    key_field: ClassVar[str] = "job_id"

    job_id: str
    task_id: str
    base_model: str = ""
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eta_seconds: float | None = None
    error: str = ""


# --- models -----------------------------------------------------------------------------


class ModelRegistered(Event):
    """A model version was exported to the Triton repository and evaluated offline."""

    topic: ClassVar[str] = "interns.models.v1"
    key_field: ClassVar[str] = "task_id"

    task_id: str
    model: str = Field(description="Triton model name")
    version: int = Field(ge=1, description="Version number; never reused")
    base_model: str
    passed: bool = Field(description="Whether the offline evaluation gate was met")
    scores: dict[str, float] = Field(default_factory=dict)
    latency_ms: float = 0.0
    size_bytes: int = 0


# --- rollouts (the routing table) -------------------------------------------------------


class RolloutChanged(Event):
    """A task's route changed. The routers' table is the latest of these per task."""

    topic: ClassVar[str] = "interns.rollouts.v1"
    key_field: ClassVar[str] = "task_id"

    task_id: str
    signature: str = Field("", description="Structural signature matched at serve time")
    target: str = Field(description="'expert' or the intern's Triton model name")
    model_version: int = 0
    mode: Literal["off", "shadow", "canary", "full"]
    canary_share: float = Field(0.0, ge=0.0, le=1.0)
    pinned: bool = False
    changed_by: str = Field(description="'controller' or 'operator:<name>'")
    reason: str = ""


# --- shadow comparison ------------------------------------------------------------------


class ShadowCompared(Event):
    """The expert and an intern answered the same call; how far they agree. In shadow mode
    the expert served and the intern ran beside it; a sampled check (`kind` "check") asks
    the expert about a call the intern served (canary or full)."""

    topic: ClassVar[str] = "interns.shadow.v1"
    key_field: ClassVar[str] = "task_id"

    trace_id: str
    task_id: str
    model: str
    model_version: int
    agree: bool
    score: float = Field(ge=0.0, le=1.0)
    expert_answer: str
    intern_answer: str
    intern_latency_ms: float = 0.0
    kind: Literal["shadow", "check"] = Field(
        "shadow", description="shadow: the expert served; check: the intern served, sampled"
    )
    fallback: bool = Field(
        False, description="The intern gave no usable answer (the expert served instead)"
    )


# --- dead letter ------------------------------------------------------------------------


class DeadLetter(Event):
    """A record a consumer could not process, with the reason and the original bytes."""

    topic: ClassVar[str] = "interns.deadletter.v1"
    key_field: ClassVar[str] = "source_topic"

    source_topic: str
    source_partition: int = -1
    source_offset: int = -1
    consumer: str
    reason: str
    payload: str = Field(description="The original record, decoded as UTF-8 with replacement")


ALL_EVENTS: tuple[type[Event], ...] = (
    TraceRecorded,
    TaskChanged,
    TrainingJobProgress,
    ModelRegistered,
    RolloutChanged,
    ShadowCompared,
    DeadLetter,
)

TOPIC_PARTITIONS: dict[str, int] = {
    TraceRecorded.topic: 4,
    TaskChanged.topic: 1,
    TrainingJobProgress.topic: 1,
    ModelRegistered.topic: 1,
    RolloutChanged.topic: 1,
    ShadowCompared.topic: 2,
    DeadLetter.topic: 1,
}
