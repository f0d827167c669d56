"""The demo's plan and budget: what it promises up front, the pace of the replay, the
settings the stack gets, and which jobs the budget cancels."""

from __future__ import annotations

import os
from collections import Counter
from types import SimpleNamespace

import pytest

from interns.demo.loop import jobs_to_cancel, schedule
from interns.demo.plan import machine_slowdown, make_plan, stack_environment
from interns.expert.replay import WorkloadRecord

SGD_RECORDS = 6027


def records(n: int) -> list[WorkloadRecord]:
    return [
        WorkloadRecord(
            request={"messages": [{"role": "user", "content": str(i)}]},
            answer={"role": "assistant", "content": str(i)},
            metadata={"record_id": i},
        )
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def no_exported_settings(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("TRAINER_", "DEPLOYER_", "ROUTER_", "MINER_")):
            monkeypatch.delenv(name)


def test_the_sgd_plan_fits_30_minutes_and_says_so():
    plan = make_plan("sgd.jsonl", "sgd", SGD_RECORDS)
    assert plan.lines()[0].startswith("finishes in at most 30 minutes")
    assert plan.replay_s + plan.startup_reserve_s + plan.teardown_reserve_s <= 30 * 60
    discover, serve = plan.phases
    # One pass over the workload at a pace the miner follows, then steady traffic.
    assert discover.rate <= 25 and discover.rate * discover.end_s >= SGD_RECORDS
    assert serve.start_s == discover.end_s and serve.rate == 10
    # Jobs start only while one could still be trained and rolled out.
    assert discover.end_s < plan.training_deadline_s < plan.replay_s
    assert plan.settings["TRAINER_TRAINING__MAX_STEPS"] == str(plan.max_steps)
    assert 20 <= plan.max_steps <= 120
    assert plan.settings["DEPLOYER_GATE__MIN_AGREEMENT"] == "0.95"
    # Deferrals are no fallbacks: the deployer's own fallback gate applies.
    assert "DEPLOYER_GATE__MAX_FALLBACK_RATE" not in plan.settings


def test_more_interns_get_fewer_steps_each():
    one = make_plan("sgd.jsonl", "sgd", SGD_RECORDS, interns=1)
    three = make_plan("sgd.jsonl", "sgd", SGD_RECORDS, interns=3)
    assert one.max_steps > three.max_steps


def test_a_small_workload_trains_sooner():
    plan = make_plan("log.jsonl", "openai_log", 60, budget_s=300)
    assert plan.min_examples == 10
    assert plan.lines()[0].startswith("finishes in at most 5 minutes")


def test_a_budget_with_no_time_to_replay_is_refused():
    with pytest.raises(ValueError, match="leaves"):
        make_plan("sgd.jsonl", "sgd", SGD_RECORDS, budget_s=120)
    with pytest.raises(ValueError, match="no record"):
        make_plan("empty.jsonl", "openai_log", 0)


def test_exported_settings_win_over_the_plan(monkeypatch):
    monkeypatch.setenv("TRAINER_TRAINING__MAX_STEPS", "3")
    monkeypatch.setenv("DEPLOYER_GATE__MIN_AGREEMENT", "0.99")
    plan = make_plan("sgd.jsonl", "sgd", SGD_RECORDS)
    assert plan.max_steps == 3 and plan.settings["TRAINER_TRAINING__MAX_STEPS"] == "3"
    assert plan.min_agreement == 0.99
    assert any("3 steps" in line for line in plan.lines())


def test_stack_environment_is_set_for_the_stack_and_restored(monkeypatch):
    monkeypatch.setenv("MINER_INTERVAL_S", "10")
    with stack_environment({"MINER_INTERVAL_S": "3", "DEPLOYER_TICK_S": "0.5"}):
        assert os.environ["MINER_INTERVAL_S"] == "3" and os.environ["DEPLOYER_TICK_S"] == "0.5"
    assert os.environ["MINER_INTERVAL_S"] == "10" and "DEPLOYER_TICK_S" not in os.environ


def test_the_schedule_sends_one_pass_then_keeps_the_serving_rate():
    plan = make_plan("log.jsonl", "openai_log", 200, budget_s=600)
    calls = list(schedule(plan, records(200)))
    discover = [c for c in calls if c.phase == "discover"]
    serve = [c for c in calls if c.phase == "serve"]
    # The first pass sends each record once, in a shuffled order.
    first_pass = [c.record.metadata["record_id"] for c in calls[:200]]
    assert sorted(first_pass) == list(range(200)) and first_pass != list(range(200))
    assert len(discover) == pytest.approx(plan.phases[0].end_s * plan.phases[0].rate, abs=1)
    serve_s = plan.phases[1].end_s - plan.phases[1].start_s
    assert len(serve) == pytest.approx(serve_s * plan.phases[1].rate, abs=1)
    assert all(a.at_s <= b.at_s for a, b in zip(calls, calls[1:], strict=False))
    assert calls[-1].at_s < plan.replay_s
    # Later passes go over the workload again: every record about as often.
    counts = Counter(c.record.metadata["record_id"] for c in calls)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_the_limit_caps_the_calls_sent():
    plan = make_plan("log.jsonl", "openai_log", 200, budget_s=600, limit=50)
    assert len(list(schedule(plan, records(200)))) == 50


def job(job_id: str, status: str) -> SimpleNamespace:
    return SimpleNamespace(job_id=job_id, status=status)


def test_queued_jobs_are_cancelled_once_none_could_be_rolled_out_in_time():
    plan = make_plan("sgd.jsonl", "sgd", SGD_RECORDS)
    jobs = [job("a", "succeeded"), job("b", "running"), job("c", "queued")]
    early = plan.training_deadline_s - 1
    assert jobs_to_cancel(jobs, early, plan, replay_over=False, cancelled=[]) == []
    late = plan.training_deadline_s + 1
    seen = {"b"}  # running before the deadline: it goes on
    assert jobs_to_cancel(jobs, late, plan, False, cancelled=[], started_in_time=seen) == ["c"]
    assert jobs_to_cancel(jobs, late, plan, False, cancelled=["c"], started_in_time=seen) == []
    # When the replay is over nothing may go on training.
    assert jobs_to_cancel(jobs, early, plan, replay_over=True, cancelled=[]) == ["b", "c"]


def test_a_job_that_starts_after_the_training_deadline_is_cancelled():
    """A task found late is queued and taken by the idle worker between two looks: it would
    train on the cores serving the replay with no time left to roll it out."""
    plan = make_plan("sgd.jsonl", "sgd", SGD_RECORDS)
    late = plan.training_deadline_s + 1
    jobs = [job("early", "running"), job("late", "running")]
    assert jobs_to_cancel(
        jobs, late, plan, replay_over=False, cancelled=[], started_in_time={"early"}
    ) == ["late"]


def test_a_busy_machine_gets_fewer_longer_interns_not_more_useless_ones():
    assert machine_slowdown(0.3, cores=2) == 1.0
    assert machine_slowdown(3.0, cores=2) == 2.0
    assert machine_slowdown(40.0, cores=2) == 4.0
    quiet = make_plan("sgd.jsonl", "sgd", SGD_RECORDS)
    busy = make_plan("sgd.jsonl", "sgd", SGD_RECORDS, slowdown=4.0)
    assert quiet.interns == 2 and busy.interns == 1
    # Each step is planned 4 times slower: fewer steps, but enough to learn something.
    assert 10 <= busy.max_steps < quiet.max_steps
    assert any("4.0x slower" in line for line in busy.lines())
    assert not any("slower" in line for line in quiet.lines())
