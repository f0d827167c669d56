"""The routing table: each task's current route, built from the rollout topic, and the
matchers of split signatures, from the task topic.

Every router replica reads both topics whole from the start (no consumer group), so each
one holds the same table and applies changes live, without restart. A call is matched to
a task by its structural signature (`interns.common.signature`): one dict lookup. Where
the miner split a signature into sub-tasks, its task's events carry a matcher
(`interns.common.task_matcher`, a linear model over the words of the last user message,
tens of microseconds) that picks the sub-task; a signature that is one task pays one more
lookup in a dict of split signatures, nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from interns.common.events import RolloutChanged, TaskChanged
from interns.common.logging import get_logger
from interns.common.metrics import ROUTE_SHARE
from interns.common.task_matcher import MatcherError, TaskMatcher, request_text

log = get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    """Where one call goes and why. A `shadow_model` runs beside the expert, off the
    critical path, and the two answers are compared."""

    target: str
    model: str = ""
    model_version: int = 0
    task_id: str = ""
    reason: str = ""
    mode: str = ""
    shadow_model: str = ""
    shadow_version: int = 0


@dataclass(frozen=True)
class SplitSignature:
    """A signature the miner split: the task that carries the matcher, and the matcher."""

    task_id: str
    matcher: TaskMatcher
    occurred_at: Any


def canary_bucket(tenant_id: str, session_id: str, task_id: str) -> float:
    """A number in [0, 1) fixed for a session and task: a session stays on one side of a
    canary split for as long as the share does not change."""
    digest = hashlib.blake2b(f"{tenant_id}\x1f{session_id}\x1f{task_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def intern_share(change: RolloutChanged) -> float:
    """Share of the task's calls that `change` gives the intern (shadow calls serve none)."""
    if change.target == "expert" or change.mode in ("off", "shadow"):
        return 0.0
    return change.canary_share if change.mode == "canary" else 1.0


@dataclass
class RoutingTable:
    """The latest rollout per task, and the matcher of each split signature. `revision`
    counts the changes applied."""

    routes: dict[str, RolloutChanged] = field(default_factory=dict)
    by_signature: dict[str, RolloutChanged] = field(default_factory=dict)
    matchers: dict[str, SplitSignature] = field(default_factory=dict)
    revision: int = 0

    def apply(self, change: RolloutChanged) -> None:
        """Takes a rollout change; an older event for the same task never wins."""
        current = self.routes.get(change.task_id)
        if current is not None and current.occurred_at > change.occurred_at:
            return
        if current is not None and self.by_signature.get(current.signature) is current:
            del self.by_signature[current.signature]
        self.routes[change.task_id] = change
        ROUTE_SHARE.labels("router", change.task_id).set(intern_share(change))
        if change.signature:
            self.by_signature[change.signature] = change
        self.revision += 1

    def apply_task(self, change: TaskChanged) -> None:
        """Takes a task event: a matcher splits its signature; an event of the task that
        carried the matcher without one means the signature is one task again. An older
        event never wins; a matcher that cannot be read is logged and ignored."""
        if not change.signature:
            return
        current = self.matchers.get(change.signature)
        if current is not None and current.occurred_at > change.occurred_at:
            return
        if change.matcher is not None:
            try:
                matcher = TaskMatcher.from_dict(change.matcher)
            except MatcherError as error:
                log.warning("task matcher ignored", task_id=change.task_id, error=str(error))
                return
            self.matchers[change.signature] = SplitSignature(
                change.task_id, matcher, change.occurred_at
            )
            self.revision += 1
        elif current is not None and current.task_id == change.task_id:
            del self.matchers[change.signature]
            self.revision += 1

    def decide(
        self,
        signature: str,
        tenant_id: str,
        session_id: str,
        expert_model: str,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The route of a call with this structural signature; `request` (the OpenAI
        body) picks the sub-task when the signature is split."""
        split = self.matchers.get(signature)
        if split is None:
            route = self.by_signature.get(signature)
            if route is None:
                return Decision("expert", expert_model, reason="no task matched")
        else:
            if request is None:
                return Decision("expert", expert_model, reason="split task: no request to match")
            task_id = split.matcher.match(request_text(request))
            route = self.routes.get(task_id)
            if route is None:
                return Decision("expert", expert_model, task_id=task_id, reason="task not routed")
        expert = Decision("expert", expert_model, task_id=route.task_id, mode=route.mode)
        if route.pinned:
            return replace(expert, reason="task pinned to the expert")
        if route.mode == "off" or route.target == "expert":
            return replace(expert, reason="task routed to the expert")
        intern = Decision(
            "intern", route.target, route.model_version, route.task_id, mode=route.mode
        )
        if route.mode == "shadow":
            return replace(
                expert,
                reason="shadow: expert serves",
                shadow_model=route.target,
                shadow_version=route.model_version,
            )
        if route.mode == "canary":
            if canary_bucket(tenant_id, session_id, route.task_id) >= route.canary_share:
                return replace(expert, reason="canary: expert share")
            return replace(intern, reason="canary: intern share")
        return replace(intern, reason="full")
