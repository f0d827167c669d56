"""The rollout's decisions: advance on enough agreeing samples, roll back early on
disagreement or fallbacks, hold while samples are missing, give up when time runs out."""

from __future__ import annotations

from interns.deployer.gating import Gate, Stage, Tally, Window, judge, plan, watch

GATE = Gate(min_samples=20, min_agreement=0.9, max_fallback_rate=0.1)


def tally(agreed: int, disagreed: int = 0, fallbacks: int = 0) -> Tally:
    t = Tally()
    for _ in range(agreed):
        t.add(True, False)
    for _ in range(disagreed):
        t.add(False, False)
    for _ in range(fallbacks):
        t.add(False, True)
    return t


def test_the_plan_goes_shadow_then_each_canary_share_then_full():
    assert plan([0.1, 0.5]) == [
        Stage("shadow"),
        Stage("canary", 0.1),
        Stage("canary", 0.5),
        Stage("full"),
    ]
    assert [s.evidence for s in plan([0.1])] == ["shadow", "check", "check"]


def test_enough_agreeing_samples_advance():
    verdict = judge(tally(19, 1), GATE)
    assert verdict.action == "advance"
    assert "agreement 0.95" in verdict.reason and "20 samples" in verdict.reason


def test_too_few_samples_hold_until_the_stage_expires():
    assert judge(tally(10), GATE).action == "hold"
    expired = judge(tally(10), GATE, expired=True)
    assert expired.action == "rollback" and "too few samples" in expired.reason


def test_low_agreement_rolls_back_before_the_minimum_sample_count():
    # 3 disagreements make 0.9 over 20 unreachable: no need to wait for 20 samples.
    verdict = judge(tally(2, 3), GATE)
    assert verdict.action == "rollback"
    assert verdict.reason.startswith("live agreement 0.40 < 0.90")


def test_agreement_just_below_the_threshold_rolls_back():
    assert judge(tally(36, 4), Gate(min_samples=40, min_agreement=0.95)).action == "rollback"
    assert judge(tally(38, 2), Gate(min_samples=40, min_agreement=0.95)).action == "advance"


def test_a_rising_fallback_rate_rolls_back():
    verdict = judge(tally(5, 0, 3), GATE)
    assert verdict.action == "rollback" and verdict.reason.startswith("fallback rate")


def test_a_serving_version_is_judged_on_its_latest_window():
    window = Window(20)
    for _ in range(40):
        window.add(True, False)
    assert watch(window, GATE).action == "hold"
    for _ in range(5):
        window.add(False, False)
    verdict = watch(window, GATE)
    assert verdict.action == "rollback" and "agreement 0.75" in verdict.reason


def test_a_new_window_holds_on_a_few_disagreements_that_leave_the_gate_reachable():
    window = Window(50)
    for _ in range(2):
        window.add(False, False)
    assert watch(window, GATE).action == "hold"
    window.add(False, False)
    assert watch(window, GATE).action == "rollback"


def test_past_the_minimum_the_rate_decides_not_the_count():
    # 5 disagreements would end a young stage, but 95 agreeing of 100 pass a 0.9 gate.
    assert judge(tally(95, 5), GATE).action == "advance"
    window = Window(100)
    for n in range(100):
        window.add(n % 20 != 0, False)
    assert watch(window, GATE).action == "hold"
