"""Task mining: group traces into recurring tasks, by structural signature first, then,
where one signature holds several tasks, by the content of the requests.

A signature (`interns.common.signature.request_signature`: the masked prompt template,
tool set and response format) is one task, `task-<signature[:12]>`, unless
`interns.miner.subclusters.decide_split` finds that it holds several (the expert answers
in distinct ways and the requests' embeddings follow them). Then its traces are spread
over sub-tasks by a cheap matcher (`interns.common.task_matcher`) that the router runs
too, so the miner and the router put a call in the same task.

Mining is incremental: `MiningState` keeps per-task counts and, per signature, the last
user message and answer shape of each trace (to re-assign them when a signature is split
or merged back). Each pass adds only the traces stored after its watermark and assigns
them with the current matcher; then `refine` re-decides the signatures that need it:

- a signature never decided that has reached MIN_DECIDE_SIZE traces;
- a signature that has grown REDECIDE_GROWTH times since its last decision;
- a signature whose tasks' answer consistency fell by MAX_CONSISTENCY_DROP since then.

A decision embeds only the new members of a bounded, uniform sample of the signature's
traces (SAMPLE_SIZE per signature; a message that repeats is embedded once), never every
trace. Task ids stay the same as traffic grows: a signature's
id derives from the signature, a sub-task's from its main answer shape. A new sub-task is
recorded as split from the task that held most of its traces; a sub-task that disappears
as merged into the one that took most of them (`TaskStats.related_task_ids`, the
`TaskChanged` events).

Replaceability, 0 to 1, how worth and how easy it is for an intern to take a task over:

    consistency * KIND_WEIGHT[output_kind] * min(1, traffic_share / FULL_SHARE)

consistency (one answer shape is easier to learn), the output kind (a tool call or JSON
can be checked, free text less), and traffic share up to FULL_SHARE (a tiny task is not
worth a model).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from interns.common.db import Task, Trace
from interns.common.signature import request_signature, signature_parts
from interns.common.task_matcher import TaskMatcher, request_text
from interns.miner.subclusters import Embed, SplitDecision, decide_split

KIND_WEIGHT = {"tool_call": 1.0, "json": 0.9, "text": 0.5}
FULL_SHARE = 0.05
LABEL_TEMPLATE_CHARS = 60
READ_BATCH = 2000
SAMPLE_SIZE = 96
MIN_DECIDE_SIZE = 50
REDECIDE_GROWTH = 2.0
MAX_CONSISTENCY_DROP = 0.10

ACTIVE, SPLIT, MERGED = "active", "split", "merged"


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
    if isinstance(content, str) and content.startswith("{"):
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
    """The running counts of one task. `status` is active, split (its traces went to
    sub-tasks) or merged (into `related_task_ids`)."""

    task_id: str
    signature: str
    label: str
    first_seen: datetime
    parent_task_id: str = ""
    status: str = ACTIVE
    related_task_ids: list[str] = field(default_factory=list)
    size: int = 0
    expert_cost_usd: float = 0.0
    output_kinds: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)

    def count(self, kind: str, shape: str, cost_usd: float) -> None:
        self.size += 1
        self.expert_cost_usd += cost_usd
        self.output_kinds[kind] += 1
        self.shapes[shape] += 1

    def clear(self) -> None:
        self.size, self.expert_cost_usd = 0, 0.0
        self.output_kinds, self.shapes = Counter(), Counter()

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
class SignatureGroup:
    """Every trace of one signature, as much as re-assigning it needs, and its split."""

    signature: str
    task_id: str
    texts: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    assigned: list[str] = field(default_factory=list)
    matcher: TaskMatcher | None = None
    decision: SplitDecision | None = None
    decided_size: int = 0
    decided_consistency: float | None = None
    sample: list[tuple[str, str]] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    sampled_upto: int = 0

    @property
    def size(self) -> int:
        return len(self.texts)

    def task_of(self, text: str) -> str:
        return self.matcher.match(text) if self.matcher is not None else self.task_id


@dataclass(frozen=True)
class TaskChange:
    """A split or a merge, for the task events."""

    task_id: str
    change: str
    related_task_ids: tuple[str, ...]


@dataclass
class MiningState:
    """Every task mined so far, each signature's traces, and the newest trace storage
    time seen. `embed` (texts -> unit vectors) enables splitting signatures; without it
    every signature is one task."""

    embed: Embed | None = None
    sample_size: int = SAMPLE_SIZE
    tasks: dict[str, TaskStats] = field(default_factory=dict)
    groups: dict[str, SignatureGroup] = field(default_factory=dict)
    total: int = 0
    watermark: datetime | None = None
    changes: list[TaskChange] = field(default_factory=list)
    embedded: int = 0

    def add(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        cost_usd: float = 0.0,
        stored_at: datetime | None = None,
    ) -> str:
        """Count one trace in its task (created if new); returns the task id."""
        signature = request_signature(request)
        group = self.groups.get(signature)
        if group is None:
            group = self._new_group(signature, task_label(request), stored_at)
        text = request_text(request)
        kind, shape = answer_shape(response)
        task_id = group.task_of(text)
        group.texts.append(text)
        group.kinds.append(kind)
        group.shapes.append(shape)
        group.costs.append(cost_usd or 0.0)
        group.assigned.append(task_id)
        self._task(task_id, group).count(kind, shape, cost_usd or 0.0)
        self.total += 1
        if stored_at is not None and (self.watermark is None or stored_at > self.watermark):
            self.watermark = stored_at
        return task_id

    def task_of(self, request: dict[str, Any]) -> str | None:
        """The task a request belongs to now (what the router decides), None for a
        signature never seen."""
        group = self.groups.get(request_signature(request))
        return group.task_of(request_text(request)) if group is not None else None

    def add_all(self, traces: Iterable[Any]) -> set[str]:
        """Count traces (with request, response, cost_usd, stored_at); returns the ids of
        the tasks they fell in."""
        return {self.add(t.request, t.response, t.cost_usd, t.stored_at) for t in traces}

    def _new_group(self, signature: str, label: str, first_seen: datetime | None):
        group = SignatureGroup(signature, task_id_for(signature))
        self.groups[signature] = group
        if group.task_id not in self.tasks:
            self.tasks[group.task_id] = TaskStats(
                group.task_id, signature, label, first_seen or datetime.now(UTC)
            )
        return group

    def _task(self, task_id: str, group: SignatureGroup) -> TaskStats:
        task = self.tasks.get(task_id)
        if task is None:
            parent = self.tasks[group.task_id]
            task = TaskStats(
                task_id, group.signature, parent.label, datetime.now(UTC), group.task_id
            )
            self.tasks[task_id] = task
        return task

    def group_consistency(self, group: SignatureGroup) -> float:
        """Share of the group's answers that have the main shape of their task."""
        ids = {group.task_id, *(group.matcher.task_ids if group.matcher else ())}
        same = sum(self.tasks[i].shapes.most_common(1)[0][1] for i in ids if self.tasks[i].size)
        return same / group.size if group.size else 0.0

    def _needs_decision(self, group: SignatureGroup) -> bool:
        if group.size < MIN_DECIDE_SIZE:
            return False
        if group.decided_size == 0 or group.size >= REDECIDE_GROWTH * group.decided_size:
            return True
        consistency = self.group_consistency(group)
        if group.decided_consistency is None:  # restored from the database: a baseline
            group.decided_consistency = consistency
            return False
        return consistency < group.decided_consistency - MAX_CONSISTENCY_DROP

    def _refresh_sample(self, group: SignatureGroup) -> None:
        """Keep a uniform sample of the group's traces (so that each answer shape has its
        share of the traffic): fill it up to `sample_size`, then replace a share of it as
        large as the new traffic's. A message in it twice is embedded once."""
        rng = random.Random(f"{group.signature}:{group.size}")
        fresh = range(group.sampled_upto, group.size)
        room = self.sample_size - len(group.sample)
        if room <= 0:
            room = min(len(fresh), round(self.sample_size * len(fresh) / group.size))
            for position in sorted(rng.sample(range(len(group.sample)), room), reverse=True):
                del group.sample[position]
        picks = rng.sample(fresh, min(room, len(fresh)))
        group.sample += [(group.texts[i], group.shapes[i]) for i in sorted(picks)]
        kept = {text for text, _ in group.sample}
        group.vectors = {t: v for t, v in group.vectors.items() if t in kept}
        group.sampled_upto = group.size

    def refine(self) -> set[str]:
        """Re-decide the signatures that need it (see the module); returns the ids of the
        tasks whose traces moved."""
        if self.embed is None:
            return set()
        due = [g for g in self.groups.values() if self._needs_decision(g)]
        for group in due:
            self._refresh_sample(group)
        missing = sorted({t for g in due for t, _ in g.sample if t not in g.vectors})
        if missing:
            vectors = dict(zip(missing, self.embed(missing), strict=True))
            self.embedded += len(missing)
            for group in due:
                for text, _ in group.sample:
                    if text not in group.vectors:
                        group.vectors[text] = vectors[text]
        changed: set[str] = set()
        for group in due:
            decision = decide_split(
                group.task_id,
                [text for text, _ in group.sample],
                [shape for _, shape in group.sample],
                np.stack([group.vectors[text] for text, _ in group.sample]),
            )
            changed |= self.apply_decision(group, decision)
        return changed

    def apply_decision(self, group: SignatureGroup, decision: SplitDecision) -> set[str]:
        """Re-assign the group's traces under the decision's matcher, recount its tasks
        and record splits and merges; returns the ids of the tasks whose traces moved."""
        group.decision, group.decided_size = decision, group.size
        changed = self.use_matcher(group, decision.matcher)
        group.decided_consistency = self.group_consistency(group)
        return changed

    def use_matcher(self, group: SignatureGroup, matcher: TaskMatcher | None) -> set[str]:
        old = group.assigned
        group.matcher = matcher
        cache: dict[str, str] = {}
        new = []
        for text in group.texts:
            task_id = cache.get(text)
            if task_id is None:
                task_id = cache[text] = group.task_of(text)
            new.append(task_id)
        group.assigned = new
        if new == old:
            return set()
        old_ids, new_ids = set(old), set(new)
        for task_id in old_ids | new_ids:
            self._task(task_id, group).clear()
        for task_id, kind, shape, cost in zip(
            new, group.kinds, group.shapes, group.costs, strict=True
        ):
            self.tasks[task_id].count(kind, shape, cost)
        overlap = Counter(zip(old, new, strict=True))
        split_into: dict[str, list[str]] = {}
        for task_id in sorted(new_ids - old_ids - {group.task_id}):
            source = max((n, o) for (o, t), n in overlap.items() if t == task_id)[1]
            split_into.setdefault(source, []).append(task_id)
            task = self.tasks[task_id]
            task.status, task.related_task_ids = ACTIVE, [source]
        for source, targets in split_into.items():
            if source not in new_ids:
                self.tasks[source].status = SPLIT
            self.tasks[source].related_task_ids = targets
            self.changes.append(TaskChange(source, "split", tuple(targets)))
        for task_id in sorted(old_ids - new_ids):
            if task_id in split_into:
                continue
            target = max((n, t) for (o, t), n in overlap.items() if o == task_id)[1]
            task = self.tasks[task_id]
            task.status, task.related_task_ids = MERGED, [target]
            self.changes.append(TaskChange(task_id, "merged", (target,)))
        if group.task_id in new_ids - old_ids:  # one task again: its sub-tasks merged in
            parent = self.tasks[group.task_id]
            parent.status, parent.related_task_ids = ACTIVE, sorted(old_ids - new_ids)
        return {task_id for pair in overlap if pair[0] != pair[1] for task_id in pair}

    def take_changes(self) -> list[TaskChange]:
        changes, self.changes = self.changes, []
        return changes


def _rows(engine: Engine, watermark: datetime | None) -> Iterable[Any]:
    columns = (Trace.request, Trace.response, Trace.cost_usd, Trace.stored_at)
    query = select(*columns).order_by(Trace.stored_at)
    if watermark is not None:
        query = query.where(Trace.stored_at > watermark)
    with engine.connect() as connection:
        yield from connection.execution_options(yield_per=READ_BATCH).execute(query)


def mine_new_traces(engine: Engine, state: MiningState) -> set[str]:
    """Add the traces stored after the state's watermark, then re-decide the signatures
    that need it; returns the changed task ids.

    Traces stored in the same instant as the watermark but read after it would be
    missed; stored_at has microsecond precision, which makes that rare."""
    changed = state.add_all(_rows(engine, state.watermark))
    return changed | state.refine() if changed else changed


def restore_tasks(engine: Engine, state: MiningState) -> None:
    """Load the tasks table into a fresh state (before its first pass): split signatures
    keep their matcher, so a restarted miner puts every trace in the task it was in, and
    no signature is re-decided (nor embedded) before its traffic doubles again."""
    with Session(engine) as session:
        rows = session.exec(select(Task)).scalars().all()
    sub_sizes: Counter[str] = Counter()
    for row in rows:
        state.tasks[row.task_id] = TaskStats(
            row.task_id,
            row.signature,
            row.label,
            row.first_seen,
            row.parent_task_id or "",
            row.status or ACTIVE,
            list(row.related_task_ids or []),
        )
        if row.parent_task_id:
            sub_sizes[row.parent_task_id] += row.size
    for row in rows:
        if row.parent_task_id or not row.signature:
            continue
        group = SignatureGroup(row.signature, row.task_id)
        if row.matcher:
            group.matcher = TaskMatcher.from_dict(row.matcher)
            group.decided_size = max(sub_sizes[row.task_id], 1)
        elif row.size >= MIN_DECIDE_SIZE:  # decided to be one task at the last pass
            group.decided_size = row.size
        state.groups[row.signature] = group


def _matcher_agreement(group: SignatureGroup | None) -> float:
    return group.decision.agreement if group and group.decision else 0.0


def upsert_tasks(engine: Engine, state: MiningState) -> set[str]:
    """Write every task's statistics to the `tasks` table (shares change with the total);
    returns the ids of the tasks that were not in the table yet."""
    now = datetime.now(UTC)
    discovered = set()
    groups_by_task = {g.task_id: g for g in state.groups.values()}
    with Session(engine) as session:
        stored = {t.task_id: t for t in session.exec(select(Task)).scalars()}
        for stats in state.tasks.values():
            row = stored.get(stats.task_id)
            if row is None:
                row = Task(task_id=stats.task_id, first_seen=stats.first_seen)
                discovered.add(stats.task_id)
            group = groups_by_task.get(stats.task_id)
            row.label = stats.label
            row.signature = stats.signature
            row.size = stats.size
            row.traffic_share = stats.traffic_share(state.total)
            row.output_kind = stats.output_kind
            row.consistency = stats.consistency
            row.replaceability = stats.replaceability(state.total)
            row.expert_cost_usd = stats.expert_cost_usd
            row.parent_task_id = stats.parent_task_id or None
            row.status = stats.status
            row.related_task_ids = list(stats.related_task_ids)
            if group is not None:
                row.matcher = group.matcher.to_dict() if group.matcher else None
                row.matcher_agreement = _matcher_agreement(group) if group.matcher else None
            row.updated_at = now
            session.add(row)
        session.commit()
    return discovered


def matcher_of(state: MiningState, task_id: str) -> Mapping[str, Any] | None:
    """The matcher dict of a split signature's own task, None for any other task."""
    for group in state.groups.values():
        if group.task_id == task_id and group.matcher is not None:
            return group.matcher.to_dict()
    return None
