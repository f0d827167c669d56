"""The routing table: each task's current route, built from the rollout topic.

Every router replica reads the whole rollout topic from the start (no consumer group), so
each one holds the same table and applies changes live, without restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from interns.common.events import RolloutChanged


@dataclass(frozen=True)
class Decision:
    """Where one call goes and why."""

    target: str
    model: str = ""
    model_version: int = 0
    task_id: str = ""
    reason: str = ""


@dataclass
class RoutingTable:
    """The latest rollout per task. `revision` counts the changes applied."""

    routes: dict[str, RolloutChanged] = field(default_factory=dict)
    revision: int = 0

    def apply(self, change: RolloutChanged) -> None:
        """Takes a rollout change; an older event for the same task never wins."""
        current = self.routes.get(change.task_id)
        if current is not None and current.occurred_at > change.occurred_at:
            return
        self.routes[change.task_id] = change
        self.revision += 1

    def decide(self, expert_model: str) -> Decision:
        """The route of a call. Serve-time task matching arrives with the miner's matchers;
        until a task matches, the expert answers."""
        return Decision(target="expert", model=expert_model, reason="no task matched")
