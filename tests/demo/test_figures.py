"""The demo report's figures: share over time, agreement with the date rule, cost and
latency with and without interns, promotions against the gate, goals."""

from __future__ import annotations

import json

import pytest

from interns.demo.figures import (
    CallRecord,
    agreement,
    compare,
    costs,
    fallback_reasons,
    final_share,
    goals,
    per_task,
    promotions,
    route_shares,
    share_series,
)
from interns.demo.prices import PriceTable, load_prices


def call(name: str, **arguments) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ],
    }


def record(t_s: float, route: str = "expert", **fields) -> CallRecord:
    target = "intern" if route == "intern" else "expert"
    reasons = {"fallback": "fallback: timeout", "deferred": "deferred: intern deferred (0.2)"}
    reason = reasons.get(route) or fields.pop("reason", "full")
    return CallRecord(t_s=t_s, phase="serve", ok=True, target=target, reason=reason, **fields)


def test_a_wrong_date_fails_the_strict_match_and_passes_with_dates_skipped():
    reference = call("ReserveHotel", city="Paris", check_in_date="2019-03-01")
    answer = call("ReserveHotel", city="Paris", check_in_date="2019-03-02")
    assert compare(answer, reference) == (False, True)
    assert compare(reference, reference) == (True, True)
    assert compare(call("ReserveHotel", city="Lyon", check_in_date="2019-03-01"), reference) == (
        False,
        False,
    )


def test_arguments_compare_parsed_not_as_text():
    reference = call("FindBus", origin="Paris", travelers="2")
    reordered = {
        "role": "assistant",
        "tool_calls": [
            {
                "type": "function",
                "function": {
                    "name": "FindBus",
                    "arguments": '{"travelers": "2", "origin": "Paris"}',
                },
            }
        ],
    }
    assert compare(reordered, reference) == (True, True)
    assert compare({"role": "assistant", "content": "sure"}, reference) == (False, False)


def test_a_text_answer_is_compared_by_its_text():
    assert compare({"content": " Hello "}, {"content": "Hello"}) == (True, True)
    assert compare({"content": "Hi"}, {"content": "Hello"}) == (False, False)


def test_share_over_time_counts_each_route_per_bin():
    records = [
        record(1, "expert"),
        record(2, "expert"),
        record(11, "intern"),
        record(12, "fallback"),
        record(13, "intern"),
        record(14, "expert"),
        CallRecord(t_s=15, phase="serve", ok=False, error="UNAVAILABLE"),
    ]
    series = share_series(records, bin_s=10)
    assert [point["t_s"] for point in series] == [0, 10]
    assert series[0]["calls"] == 2 and series[0]["expert_share"] == 1.0
    assert series[1]["calls"] == 4
    assert series[1]["intern_share"] == 0.5
    assert series[1]["fallback_share"] == 0.25
    assert series[1]["expert_share"] == 0.25
    assert series[1]["deferred_share"] == 0.0


def test_a_call_its_intern_deferred_is_its_own_route_not_a_fallback():
    deferred = CallRecord(
        t_s=1,
        phase="serve",
        ok=True,
        target="expert",
        reason="deferred: intern deferred (confidence 0.2)",
    )
    assert deferred.route == "deferred" and deferred.as_dict()["route"] == "deferred"
    records = [deferred, record(2, "fallback"), record(3, "intern"), record(4, "expert")]
    assert route_shares(records) == {
        "intern": 0.25,
        "expert": 0.25,
        "fallback": 0.25,
        "deferred": 0.25,
    }
    assert agreement(records)["intern_calls"] == 1


def test_the_final_share_is_taken_over_the_last_tenth_of_the_calls():
    records = [record(t, "expert") for t in range(90)] + [
        record(90 + t, "intern") for t in range(10)
    ]
    assert final_share(records) == 1.0
    assert final_share(records[:50]) == 0.0
    assert final_share([]) == 0.0


def test_agreement_counts_only_the_calls_interns_served():
    records = [
        record(1, "intern", agree=True, agree_without_dates=True),
        record(2, "intern", agree=False, agree_without_dates=True),
        record(3, "intern", agree=False, agree_without_dates=False),
        record(4, "intern", agree=True, agree_without_dates=True),
        record(5, "expert", agree=False, agree_without_dates=False),
        record(6, "fallback", agree=False, agree_without_dates=False),
    ]
    figures = agreement(records)
    assert figures["intern_calls"] == 4
    assert figures["intern_agreement"] == 0.75
    assert figures["intern_agreement_strict"] == 0.5
    assert agreement([record(1, "expert")])["intern_agreement"] is None


def test_interns_make_calls_cheaper_and_faster_by_the_price_table():
    prices = PriceTable(
        expert_prompt_per_million=1_000_000,  # $1 a prompt token: easy sums
        expert_completion_per_million=2_000_000,
        expert_first_token_ms=500,
        expert_ms_per_token=10,
        intern_usd_per_cpu_hour=3600,  # $1 a CPU second
        intern_cpus=1,
    )
    expert = record(1, "expert", latency_ms=20, prompt_tokens=10, completion_tokens=5)
    intern = record(2, "intern", latency_ms=250, prompt_tokens=10, completion_tokens=5)
    figures = costs([expert, intern], prices, check_share=0.5)
    # Expert only: both calls cost 10 + 2 * 5 = $20 and take their overhead + 500 + 50 ms.
    assert figures["cost_per_call_usd_without_interns"] == pytest.approx(20)
    assert figures["latency_ms_mean_without_interns"] == pytest.approx((570 + 570) / 2)
    # With interns: the intern's call costs 0.25 CPU seconds and half an expert check.
    assert figures["cost_per_call_usd_with_interns"] == pytest.approx((20 + 0.25 + 10) / 2)
    assert figures["latency_ms_mean_with_interns"] == pytest.approx((570 + 250) / 2)
    assert figures["cost_saved_share"] == pytest.approx(1 - 30.25 / 40)


def test_a_shadowed_call_costs_the_expert_and_the_intern():
    prices = PriceTable(
        expert_prompt_per_million=1_000_000,
        expert_completion_per_million=0,
        intern_usd_per_cpu_hour=3600,
    )
    served = record(1, "intern", latency_ms=1000, prompt_tokens=1)
    shadowed = record(2, "expert", mode="shadow", reason="shadow: expert serves", prompt_tokens=1)
    figures = costs([served, shadowed], prices, check_share=0.0)
    assert figures["cost_per_call_usd_with_interns"] == pytest.approx((1 + (1 + 1)) / 2)


def test_a_promotion_below_the_gate_is_flagged():
    changes = [
        {"task_id": "a", "target": "intern-a", "mode": "shadow", "canary_share": 0,
         "reason": "intern-a v1 to shadow: loaded and warmed in 2.0 s"},
        {"task_id": "a", "target": "intern-a", "mode": "canary", "canary_share": 0.5,
         "reason": "intern-a v1 to canary 50%: agreement 0.95, fallbacks 0.00 over 20 samples"},
        {"task_id": "a", "target": "intern-a", "mode": "full", "canary_share": 0,
         "reason": "intern-a v1 to full: agreement 0.90, fallbacks 0.00 over 20 samples"},
        {"task_id": "b", "target": "expert", "mode": "off", "canary_share": 0,
         "reason": "rollback of intern-b v1 to the expert: live agreement 0.40 < 0.95"},
        {"task_id": "c", "target": "intern-c", "mode": "full", "canary_share": 0,
         "reason": "promoted by hand"},
    ]  # fmt: skip
    found = promotions(changes, min_agreement=0.95)
    assert [(p["task_id"], p["mode"], p["live_agreement"], p["below_gate"]) for p in found] == [
        ("a", "canary", 0.95, False),
        ("a", "full", 0.90, True),
        ("c", "full", None, True),
    ]


def test_per_task_gathers_calls_jobs_models_and_rollouts():
    records = [
        record(1, "intern", task_id="a", agree=True, agree_without_dates=True),
        record(2, "expert", task_id="a"),
        record(3, "expert", task_id="b"),
    ]
    jobs = [{"task_id": "a", "status": "succeeded"}]
    models = [{"task_id": "a", "version": 1, "scores": {"exact_match": 0.9}}]
    changes = [{"task_id": "a", "mode": "full"}]
    tasks = per_task(records, changes, jobs, models)
    assert list(tasks) == ["a", "b"]
    assert tasks["a"]["calls"] == 2 and tasks["a"]["intern_share"] == 0.5
    assert tasks["a"]["intern_agreement"] == 1.0
    assert tasks["a"]["jobs"] == jobs and tasks["a"]["models"] == models
    assert tasks["a"]["rollouts"] == changes
    assert tasks["b"]["intern_calls"] == 0


def test_goals_pass_and_fail_on_the_figures():
    report = {
        "intern_share": 0.65,
        "intern_agreement": 0.96,
        "intern_agreement_strict": 0.9,
        "intern_calls": 500,
        "promotions": [{"below_gate": False}],
        "duration_s": 1700,
    }
    assert [g["passed"] for g in goals(report, budget_s=1800)] == [True, True, True, True]
    report |= {
        "intern_share": 0.1,
        "intern_agreement": None,
        "intern_calls": 0,
        "promotions": [{"below_gate": True}],
        "duration_s": 1900,
    }
    verdicts = goals(report, budget_s=1800)
    assert [g["passed"] for g in verdicts] == [False, False, False, False]
    assert verdicts[1]["measured"] == "no call served by an intern"


def test_a_price_table_file_overrides_the_defaults(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("expert_prompt_per_million: 5\nintern_cpus: 2\n")
    prices = load_prices(path)
    assert prices.expert_prompt_per_million == 5 and prices.intern_cpus == 2
    assert prices.expert_completion_per_million == PriceTable().expert_completion_per_million
    assert load_prices(None) == PriceTable()


def test_fallback_reasons_are_counted_alike_whatever_their_numbers():
    records = [record(t, "fallback") for t in range(3)] + [record(4, "expert")]
    records[0].reason = "fallback: timeout after 2.5 s"
    records[1].reason = "fallback: timeout after 8.0 s"
    records[2].reason = "fallback: circuit open for intern-a v1"
    records.append(record(5, "deferred"))
    assert fallback_reasons(records) == {
        "fallback: timeout after N s": 2,
        "fallback: circuit open for intern-a vN": 1,
    }
