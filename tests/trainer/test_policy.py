"""When a task deserves an intern, and when a candidate may be served."""

from __future__ import annotations

from interns.common.events import TaskChanged
from interns.trainer.policy import EvaluationGate, TrainingPolicy


def task(**fields) -> TaskChanged:
    values = dict(
        task_id="t1",
        change="updated",
        size=500,
        traffic_share=0.1,
        output_kind="tool_call",
        consistency=0.95,
        expert_cost_usd=1.0,
    )
    return TaskChanged(**{**values, **fields})


def test_a_frequent_consistent_task_is_trained():
    decision = TrainingPolicy().decide(task())
    assert decision.train
    assert decision.reasons[0] == "500 examples >= 100"


def test_each_missing_condition_blocks_training_and_says_why():
    policy = TrainingPolicy()
    assert "only 20 examples (< 100)" in policy.decide(task(size=20)).reasons
    assert not policy.decide(task(traffic_share=0.001)).train
    assert "consistency 0.50 < 0.80" in policy.decide(task(consistency=0.5)).reasons
    assert not TrainingPolicy(output_kinds=["json"]).decide(task()).train


def test_expert_cost_qualifies_a_task_with_little_traffic():
    policy = TrainingPolicy(min_expert_cost_usd=5.0)
    assert not policy.decide(task(traffic_share=0.001, expert_cost_usd=1.0)).train
    decision = policy.decide(task(traffic_share=0.001, expert_cost_usd=9.0))
    assert decision.train and "expert cost $9.00 >= $5.00" in decision.reasons


def test_retraining_needs_growth():
    policy = TrainingPolicy(retrain_growth=1.5)
    assert not policy.grew_enough(140, 100)
    assert policy.grew_enough(150, 100)


def test_the_gate_uses_the_metric_of_the_output_kind():
    gate = EvaluationGate(tool_call=0.9, text_similarity=0.7)
    scores = {"exact_match": 0.85, "exact_match_without_dates": 0.95, "text_similarity": 0.8}
    assert not gate.check("tool_call", scores, 20).train
    assert EvaluationGate(ignore_dates=True).check("tool_call", scores, 20).train
    assert gate.check("text", scores, 20).train
    assert gate.check("json", scores, 20).reasons == ["no json_equal score"]
    assert not gate.check("text", scores, 2).train
