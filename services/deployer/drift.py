"""Drift of a served task: when to ask the trainer for a new version.

A task an intern serves is looked at every `drift_every_s`. It deserves a new version when
its live agreement fell from what the version showed when it went full, when the intern
falls back more than it should, when the expert still answers a large share of its calls
(cost still spent) other than those the intern defers, when the intern defers clearly more
of its calls than it did on its held-out evaluation (a selective intern defers by design
the calls it is not sure of: 1 - its evaluated coverage; more than that, the traffic moved
away from what it knows), or when the task has had as many new calls since the version's
training data was taken as the version was trained on (traffic it has not seen). A task
asked for once waits `cooldown_s` before it is asked for again. The new version then has
to beat the serving one offline (`interns.deployer.rollouts`) and live (its rollout).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from interns.common.db import Trace
from interns.router.serving import DEFERRED


@dataclass(frozen=True)
class DriftPolicy:
    agreement_drop: float = 0.05
    max_fallback_rate: float = 0.05
    max_expert_share: float = 0.2
    deferral_rise: float = 0.1
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
    calls: int = 0
    deferred_share: float = 0.0
    # The share of its held-out calls the version deferred (1 - coverage; 0: never defers).
    expected_deferred_share: float = 0.0


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
        reasons.append(
            f"the expert still answers {health.expert_share:.0%} of the task's calls"
            " (deferred calls aside)"
        )
    if (
        health.calls >= policy.min_samples
        and health.deferred_share > health.expected_deferred_share + policy.deferral_rise
    ):
        reasons.append(
            f"the intern defers {health.deferred_share:.0%} of the task's calls"
            f" ({health.expected_deferred_share:.0%} in its evaluation)"
        )
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


class Traffic(NamedTuple):
    """A task's calls in a window: all, those the expert answered, and among them those
    its intern deferred."""

    calls: int
    by_expert: int
    deferred: int


def traffic_since(engine: Engine, task_id: str, since: datetime) -> Traffic:
    """The task's traffic since `since`, from stored traces."""
    deferred = Trace.route_reason.like(f"{DEFERRED}:%")
    with Session(engine) as session:
        rows = session.exec(
            select(Trace.route_target, deferred, func.count())
            .where(Trace.task_id == task_id, Trace.created_at >= since)
            .group_by(Trace.route_target, deferred)
        ).all()
    calls = sum(count for _, _, count in rows)
    by_expert = sum(count for target, _, count in rows if target == "expert")
    by_deferral = sum(count for target, was, count in rows if target == "expert" and was)
    return Traffic(calls, by_expert, by_deferral)
