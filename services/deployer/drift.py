"""Drift of a served task: when to ask the trainer for a new version.

A task an intern serves is looked at every `drift_every_s`. It deserves a new version when
its live agreement fell from what the version showed when it went full, when the intern
falls back more than it should, when the expert still answers a large share of its calls
(cost still spent), or when the task has had as many new calls since the version's
training data was taken as the version was trained on (traffic it has not seen). A task
asked for once waits `cooldown_s` before it is asked for again. The new version then has
to beat the serving one offline (`interns.deployer.rollouts`) and live (its rollout).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from interns.common.db import Trace


@dataclass(frozen=True)
class DriftPolicy:
    agreement_drop: float = 0.05
    max_fallback_rate: float = 0.05
    max_expert_share: float = 0.2
    new_traffic_ratio: float = 1.0
    min_samples: int = 50
    cooldown_s: float = 3600.0


@dataclass(frozen=True)
class TaskHealth:
    """What was measured of a served task."""

    task_id: str
    agreement_at_full: float
    agreement_now: float
    samples: int
    fallback_rate: float
    expert_share: float
    new_calls: int
    train_examples: int


def drift_reasons(health: TaskHealth, policy: DriftPolicy) -> list[str]:
    """Why the task deserves a new version (empty: it does not)."""
    reasons = []
    if health.samples >= policy.min_samples:
        drop = health.agreement_at_full - health.agreement_now
        if drop > policy.agreement_drop:
            reasons.append(
                f"live agreement fell from {health.agreement_at_full:.2f} to"
                f" {health.agreement_now:.2f}"
            )
        if health.fallback_rate > policy.max_fallback_rate:
            reasons.append(
                f"fallback rate {health.fallback_rate:.2f} > {policy.max_fallback_rate:.2f}"
            )
    if health.expert_share > policy.max_expert_share:
        reasons.append(f"the expert still answers {health.expert_share:.0%} of the task's calls")
    if (
        health.train_examples
        and health.new_calls >= policy.new_traffic_ratio * health.train_examples
    ):
        reasons.append(
            f"{health.new_calls} new calls since its data was taken"
            f" ({health.train_examples} trained on)"
        )
    return reasons


def should_retrain(
    health: TaskHealth, policy: DriftPolicy, seconds_since_last_request: float | None
) -> list[str]:
    """The reasons to ask for a new version now (empty: not now)."""
    if seconds_since_last_request is not None and seconds_since_last_request < policy.cooldown_s:
        return []
    return drift_reasons(health, policy)


def traffic_since(engine: Engine, task_id: str, since: datetime) -> tuple[int, int]:
    """(calls, calls the expert answered) of the task since `since`, from stored traces."""
    with Session(engine) as session:
        rows = session.exec(
            select(Trace.route_target, func.count())
            .where(Trace.task_id == task_id, Trace.created_at >= since)
            .group_by(Trace.route_target)
        ).all()
    counts = dict(rows)
    return sum(counts.values()), counts.get("expert", 0)
