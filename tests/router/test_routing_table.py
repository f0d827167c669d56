"""The routing table follows the rollout topic; a late, older event never wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from interns.common.events import RolloutChanged
from interns.router.routing import RoutingTable


def change(mode: str, at: datetime) -> RolloutChanged:
    return RolloutChanged(
        task_id="t1",
        target="intern-t1",
        model_version=2,
        mode=mode,
        changed_by="controller",
        occurred_at=at,
    )


def test_the_latest_change_per_task_is_in_force():
    table = RoutingTable()
    now = datetime.now(UTC)
    table.apply(change("shadow", now))
    table.apply(change("full", now + timedelta(seconds=1)))
    assert table.routes["t1"].mode == "full"
    table.apply(change("canary", now - timedelta(seconds=5)))
    assert table.routes["t1"].mode == "full"
    assert table.revision == 2


def test_until_a_task_matches_the_expert_answers():
    decision = RoutingTable().decide("big-model")
    assert (decision.target, decision.model) == ("expert", "big-model")
