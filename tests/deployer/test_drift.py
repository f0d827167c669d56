"""Drift: a served task is sent back to training when its agreement falls, its fallbacks
rise, the expert still answers much of it, its intern defers more than it did in its
evaluation, or much new traffic came; not more often than the cooldown allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from interns.common.db import Trace
from interns.deployer.drift import (
    DriftPolicy,
    TaskHealth,
    Traffic,
    drift_reasons,
    should_retrain,
    traffic_since,
)

POLICY = DriftPolicy(agreement_drop=0.05, max_fallback_rate=0.05, max_expert_share=0.2)
HEALTHY = TaskHealth(
    task_id="weather",
    agreement_at_full=0.97,
    agreement_now=0.96,
    samples=200,
    fallback_rate=0.01,
    expert_share=0.05,
    new_calls=100,
    train_examples=800,
    calls=300,
    deferred_share=0.5,
    expected_deferred_share=0.45,
)


def with_(**changes) -> TaskHealth:
    return TaskHealth(**{**HEALTHY.__dict__, **changes})


def test_a_healthy_task_is_left_alone():
    assert drift_reasons(HEALTHY, POLICY) == []


def test_each_kind_of_drift_is_named():
    assert drift_reasons(with_(agreement_now=0.85), POLICY) == [
        "live agreement fell from 0.97 to 0.85"
    ]
    assert drift_reasons(with_(fallback_rate=0.2), POLICY) == ["fallback rate 0.20 > 0.05"]
    assert drift_reasons(with_(expert_share=0.4), POLICY) == [
        "the expert still answers 40% of the task's calls (deferred calls aside)"
    ]
    assert drift_reasons(with_(deferred_share=0.6), POLICY) == [
        "the intern defers 60% of the task's calls (45% in its evaluation)"
    ]
    assert drift_reasons(with_(new_calls=900), POLICY) == [
        "900 new calls since its data was taken (800 trained on)"
    ]


def test_too_few_live_samples_say_nothing_about_agreement():
    assert drift_reasons(with_(agreement_now=0.5, samples=10), POLICY) == []


def test_a_selective_intern_deferring_as_evaluated_is_not_drift():
    """An intern that keeps 40% of its calls by design leaves 60% to the expert: that is
    no reason to train it again every cooldown, as long as it defers what it did offline."""
    selective = with_(deferred_share=0.6, expected_deferred_share=0.6, expert_share=0.02)
    assert drift_reasons(selective, POLICY) == []
    assert drift_reasons(with_(deferred_share=0.9, calls=10), POLICY) == []


def test_the_cooldown_keeps_a_task_from_being_asked_for_twice():
    drifted = with_(agreement_now=0.5)
    assert should_retrain(drifted, POLICY, seconds_since_last_request=60) == []
    assert should_retrain(drifted, POLICY, seconds_since_last_request=7200)
    assert should_retrain(drifted, POLICY, seconds_since_last_request=None)


def test_traffic_is_counted_from_the_stored_traces(engine):
    now = datetime.now(UTC)
    calls = [
        ("expert", "", 1),
        ("expert", "deferred: intern deferred (confidence 0.2)", 1),
        ("expert", "fallback: intern timed out", 1),
        ("intern", "", 1),
        ("intern", "", 1),
        ("expert", "deferred: intern deferred (confidence 0.1)", 50),
    ]
    with Session(engine) as session:
        for n, (target, reason, age) in enumerate(calls):
            session.add(
                Trace(
                    trace_id=f"t{n}",
                    tenant_id="acme",
                    request={"messages": []},
                    route_target=target,
                    route_reason=reason,
                    task_id="weather",
                    created_at=now - timedelta(hours=age),
                )
            )
        session.commit()
    assert traffic_since(engine, "weather", now - timedelta(hours=24)) == Traffic(
        calls=5, by_expert=3, deferred=1
    )
