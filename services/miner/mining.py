"""Task mining: group traces into recurring tasks by their structural signature.

A task is every trace whose request has one signature
(`interns.common.signature.request_signature`), the same function the router uses to
match a live call, so a mined task can be served without looking at the content.
Task ids derive from the signature alone and stay the same as traffic grows.

Mining is incremental: `MiningState` keeps per-task counts in memory and each pass adds
only the traces stored after its watermark. A miner that restarts rebuilds the counts
with one full pass.

Replaceability, 0 to 1, how worth and how easy it is for an intern to take a task over:

    consistency * KIND_WEIGHT[output_kind] * min(1, traffic_share / FULL_SHARE)

consistency (one answer shape is easier to learn), the output kind (a tool call or JSON
can be checked, free text less), and traffic share up to FULL_SHARE (a tiny task is not
worth a model).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from interns.common.db import Task, Trace
from interns.common.signature import request_signature, signature_parts

KIND_WEIGHT = {"tool_call": 1.0, "json": 0.9, "text": 0.5}
FULL_SHARE = 0.05
LABEL_TEMPLATE_CHARS = 60
READ_BATCH = 1000


def task_id_for(signature: str) -> str:
    """The stable id of the task of `signature`."""
    return f"task-{signature[:12]}"


def _message(response: dict[str, Any] | None) -> dict[str, Any]:
    """The assistant message of a stored trace's response (`TraceResponse`: `message`), or
    of an OpenAI response body (`choices[0].message`)."""
    response = response or {}
    if "message" in response:
        return response.get("message") or {}
    choices = response.get("choices") or [{}]
    return choices[0].get("message") or {}


def _tool_names(message: dict[str, Any]) -> list[str]:
    return sorted(
        (c.get("function") or {}).get("name", "") for c in message.get("tool_calls") or []
    )


def answer_shape(response: dict[str, Any] | None) -> tuple[str, str]:
    """(output kind, shape) of the expert's answer: the tools it called, the top-level
    keys of a JSON object, or just "text"."""
    message = _message(response)
    if names := _tool_names(message):
        return "tool_call", "tools:" + ",".join(names)
    content = message.get("content")
    if isinstance(content, str):
        try:
            value = json.loads(content)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return "json", "keys:" + ",".join(sorted(value))
    return "text", "text"


def task_label(request: dict[str, Any]) -> str:
    """Tool names and the head of the masked prompt template."""
    template, tools, fmt = signature_parts(request)
    parts = []
    if tools:
        parts.append("tools: " + ", ".join(tools))
    if template:
        head = template[:LABEL_TEMPLATE_CHARS]
        parts.append(f'"{head}..."' if len(template) > LABEL_TEMPLATE_CHARS else f'"{head}"')
    if fmt != "text":
        parts.append(f"format: {fmt}")
    return " | ".join(parts) or "no tools, no system prompt"


@dataclass
class TaskStats:
    """The running counts of one task."""

    task_id: str
    signature: str
    label: str
    first_seen: datetime
    size: int = 0
    expert_cost_usd: float = 0.0
    output_kinds: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)

    @property
    def output_kind(self) -> str:
        return self.output_kinds.most_common(1)[0][0] if self.output_kinds else "text"

    @property
    def consistency(self) -> float:
        """Share of the task's answers that have its most common shape."""
        return self.shapes.most_common(1)[0][1] / self.size if self.size else 0.0

    def traffic_share(self, total: int) -> float:
        return self.size / total if total else 0.0

    def replaceability(self, total: int) -> float:
        share_factor = min(1.0, self.traffic_share(total) / FULL_SHARE)
        return self.consistency * KIND_WEIGHT[self.output_kind] * share_factor


@dataclass
class MiningState:
    """Every task mined so far, and the newest trace storage time seen."""

    tasks: dict[str, TaskStats] = field(default_factory=dict)
    total: int = 0
    watermark: datetime | None = None

    def add(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        cost_usd: float = 0.0,
        stored_at: datetime | None = None,
    ) -> str:
        """Count one trace in its task (created if new); returns the task id."""
        signature = request_signature(request)
        task_id = task_id_for(signature)
        task = self.tasks.get(task_id)
        if task is None:
            task = TaskStats(
                task_id, signature, task_label(request), stored_at or datetime.now(UTC)
            )
            self.tasks[task_id] = task
        kind, shape = answer_shape(response)
        task.size += 1
        task.expert_cost_usd += cost_usd or 0.0
        task.output_kinds[kind] += 1
        task.shapes[shape] += 1
        self.total += 1
        if stored_at is not None and (self.watermark is None or stored_at > self.watermark):
            self.watermark = stored_at
        return task_id

    def add_all(self, traces: Iterable[Trace]) -> set[str]:
        """Count `traces`; returns the ids of the tasks they fell in."""
        return {self.add(t.request, t.response, t.cost_usd, t.stored_at) for t in traces}


def mine_new_traces(engine: Engine, state: MiningState) -> set[str]:
    """Add the traces stored after the state's watermark; returns the changed task ids.

    Traces stored in the same instant as the watermark but read after it would be
    missed; stored_at has microsecond precision, which makes that rare."""
    query = select(Trace).order_by(Trace.stored_at)
    if state.watermark is not None:
        query = query.where(Trace.stored_at > state.watermark)
    with Session(engine) as session:
        traces = session.exec(query.execution_options(yield_per=READ_BATCH)).scalars()
        return state.add_all(traces)


def upsert_tasks(engine: Engine, state: MiningState) -> set[str]:
    """Write every task's statistics to the `tasks` table (shares change with the total);
    returns the ids of the tasks that were not in the table yet."""
    now = datetime.now(UTC)
    discovered = set()
    with Session(engine) as session:
        for stats in state.tasks.values():
            row = session.get(Task, stats.task_id)
            if row is None:
                row = Task(task_id=stats.task_id, first_seen=stats.first_seen)
                discovered.add(stats.task_id)
            row.label = stats.label
            row.signature = stats.signature
            row.size = stats.size
            row.traffic_share = stats.traffic_share(state.total)
            row.output_kind = stats.output_kind
            row.consistency = stats.consistency
            row.replaceability = stats.replaceability(state.total)
            row.expert_cost_usd = stats.expert_cost_usd
            row.updated_at = now
            session.add(row)
        session.commit()
    return discovered
