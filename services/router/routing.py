"""The routing table: each task's current route, built from the rollout topic.

Every router replica reads the whole rollout topic from the start (no consumer group), so
each one holds the same table and applies changes live, without restart. Calls are
matched to tasks by their structural signature (`interns.common.signature`): one dict
lookup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from interns.common.events import RolloutChanged


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


def canary_bucket(tenant_id: str, session_id: str, task_id: str) -> float:
    """A number in [0, 1) fixed for a session and task: a session stays on one side of a
    canary split for as long as the share does not change."""
    digest = hashlib.blake2b(f"{tenant_id}\x1f{session_id}\x1f{task_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


@dataclass
class RoutingTable:
    """The latest rollout per task. `revision` counts the changes applied."""

    routes: dict[str, RolloutChanged] = field(default_factory=dict)
    by_signature: dict[str, RolloutChanged] = field(default_factory=dict)
    revision: int = 0

    def apply(self, change: RolloutChanged) -> None:
        """Takes a rollout change; an older event for the same task never wins."""
        current = self.routes.get(change.task_id)
        if current is not None and current.occurred_at > change.occurred_at:
            return
        if current is not None and self.by_signature.get(current.signature) is current:
            del self.by_signature[current.signature]
        self.routes[change.task_id] = change
        if change.signature:
            self.by_signature[change.signature] = change
        self.revision += 1

    def decide(
        self, signature: str, tenant_id: str, session_id: str, expert_model: str
    ) -> Decision:
        """The route of a call with this structural signature."""
        route = self.by_signature.get(signature)
        if route is None:
            return Decision("expert", expert_model, reason="no task matched")
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
