"""Training examples from stored, redacted traces: the expert's answers are the targets.

A trace is an example of a task when its request has the task's structural signature (and,
for a sub-task of a split signature, the miner's matcher picks that sub-task), the expert
answered it (never an intern: interns do not learn from themselves), the call succeeded,
and curation did not exclude it (flagged, failed, or a duplicate). Exact duplicates of the
same request and answer are kept once. Train and evaluation sets are split by session, so
the turns of one conversation never sit on both sides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, or_, select

from interns.common.db import Task, Trace
from interns.common.signature import request_signature
from interns.common.task_matcher import TaskMatcher

EXCLUDED_CURATION = ("duplicate", "near_duplicate", "failed", "flagged")
READ_BATCH = 1_000


@dataclass(frozen=True)
class Example:
    trace_id: str
    session_id: str
    request: dict[str, Any]
    answer: dict[str, Any]

    @property
    def output_kind(self) -> str:
        if self.answer.get("tool_calls"):
            return "tool_call"
        response_format = self.request.get("response_format") or {}
        if response_format.get("type") in {"json_object", "json_schema"}:
            return "json"
        return "text"


class UnknownTask(LookupError):
    """No task with this id is stored."""


def example_from_trace(row: Mapping[str, Any]) -> Example | None:
    """The example a stored trace gives, or None when it has no usable expert answer."""
    message = (row.get("response") or {}).get("message")
    if not message or not (message.get("tool_calls") or message.get("content")):
        return None
    request = {k: v for k, v in row["request"].items() if v not in (None, [], "")}
    return Example(
        trace_id=row["trace_id"],
        session_id=row.get("session_id") or row["trace_id"],
        request=request,
        answer={k: v for k, v in message.items() if v is not None},
    )


def deduplicate(examples: Iterable[Example]) -> list[Example]:
    """Keeps the first of examples with the same conversation and the same answer."""
    seen: set[str] = set()
    kept = []
    for example in examples:
        key = json.dumps(
            [
                example.request.get("messages"),
                example.answer.get("tool_calls"),
                example.answer.get("content"),
            ],
            sort_keys=True,
            default=str,
        )
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept


def load_examples(engine: Engine, task_id: str, *, limit: int | None = None) -> list[Example]:
    """The task's examples, oldest first, deduplicated; at most `limit` (the newest kept)."""
    with engine.connect() as connection:
        task = connection.execute(
            select(Task.signature, Task.parent_task_id).where(Task.task_id == task_id)
        ).one_or_none()
        if task is None:
            raise UnknownTask(f"no task {task_id!r}")
        signature, parent = task
        matcher = None
        if parent:
            stored = connection.execute(
                select(Task.matcher).where(Task.task_id == parent)
            ).scalar_one_or_none()
            matcher = TaskMatcher.from_dict(stored) if stored else None

        def belongs(row: Mapping[str, Any]) -> bool:
            if row["task_id"] == task_id:
                return True
            if request_signature(row["request"]) != signature:
                return False
            return matcher is None or matcher.match_request(row["request"]) == task_id

        rows = connection.execute(
            select(Trace.trace_id, Trace.session_id, Trace.request, Trace.response, Trace.task_id)
            .where(
                Trace.status == "ok",
                Trace.route_target == "expert",
                Trace.flagged.is_(False),
                or_(Trace.task_id.is_(None), Trace.task_id == task_id),
                Trace.curation_status.not_in(EXCLUDED_CURATION),
            )
            .order_by(Trace.created_at, Trace.trace_id)
            .execution_options(yield_per=READ_BATCH)
        ).mappings()
        examples = [
            example
            for row in rows
            if belongs(row) and (example := example_from_trace(row)) is not None
        ]
    examples = deduplicate(examples)
    return examples[-limit:] if limit else examples


def _tool_definitions(request: Mapping[str, Any]) -> dict[str, str]:
    """Tool name -> its definition (JSON, keys sorted) in a request."""
    return {
        str(tool["function"].get("name")): json.dumps(tool["function"], sort_keys=True)
        for tool in request.get("tools") or []
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping)
    }


def related_examples(engine: Engine, examples: list[Example], *, limit: int) -> list[Example]:
    """At most `limit` examples of other tasks that teach this one's tools: expert answers
    that call only tools `examples` offer, defined the same way, from sessions none of
    `examples` is in (so none of the task's held-out conversations), newest first, an even
    share per tool.

    An agent's tool is often offered in several tasks (a restaurant search in the
    restaurant-and-taxi flow and in the restaurant-and-apartment one); the values its
    arguments take, and how the conversation says them ("reasonably priced" is `moderate`),
    are the same in each, so a task's intern learns them from all of those calls."""
    offered: dict[str, str] = {}
    for example in examples:
        offered.update(_tool_definitions(example.request))
    if limit <= 0 or not offered:
        return []
    own_sessions = {example.session_id for example in examples}
    own_traces = {example.trace_id for example in examples}

    def teaches(example: Example) -> bool:
        calls = example.answer.get("tool_calls") or []
        if not calls or example.session_id in own_sessions or example.trace_id in own_traces:
            return False
        defined = _tool_definitions(example.request)
        names = [str((call or {}).get("function", {}).get("name")) for call in calls]
        return all(name in offered and defined.get(name) == offered[name] for name in names)

    # An even share per tool, so the tools other tasks call most do not crowd out the rest.
    quota = {name: max(1, limit // len(offered)) for name in offered}
    found: list[Example] = []
    with engine.connect() as connection:
        rows = connection.execute(
            select(Trace.trace_id, Trace.session_id, Trace.request, Trace.response)
            .where(
                Trace.status == "ok",
                Trace.route_target == "expert",
                Trace.flagged.is_(False),
                Trace.curation_status.not_in(EXCLUDED_CURATION),
            )
            .order_by(Trace.created_at.desc(), Trace.trace_id.desc())
            .execution_options(yield_per=READ_BATCH)
        ).mappings()
        for row in rows:
            example = example_from_trace(row)
            if example is None or not teaches(example):
                continue
            names = {call["function"]["name"] for call in example.answer["tool_calls"]}
            if any(quota[name] <= 0 for name in names):
                continue
            for name in names:
                quota[name] -= 1
            found.append(example)
            if len(found) >= limit or not any(quota.values()):
                break
    return deduplicate(found)


def _session_bucket(session_id: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{session_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_by_session(
    examples: list[Example], eval_share: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """(train, evaluation): each session falls wholly on one side, by a hash of its id."""
    if not 0.0 < eval_share < 1.0:
        raise ValueError(f"eval_share must be between 0 and 1, got {eval_share}")
    train, evaluation = [], []
    for example in examples:
        side = evaluation if _session_bucket(example.session_id, seed) < eval_share else train
        side.append(example)
    return train, evaluation
