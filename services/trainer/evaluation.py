"""Scoring a trained intern on held-out expert answers, with the metric its output needs.

Tool calls: `exact_match` (name and every argument), `exact_match_without_dates`,
`argument_accuracy` (matched arguments over all arguments of either side, over the set),
`name_accuracy`. JSON answers: `json_equal`. Free text: `text_similarity` (0..1).

Selective serving: an intern states its confidence in each answer, and defers to the expert
below a threshold calibrated here so that the answers it keeps are right at least
`target_precision` of the time. `defer_below` is that threshold (on every held-out
example); `coverage` and `served_exact_match` are measured honestly by cross-fitting (the
threshold calibrated on one half of the examples is applied to the other, and back). An
answer is right when every score is perfect; with `ignore_dates` (the gate's
`TRAINER_GATE__IGNORE_DATES`, for traffic that cannot give the expert's dates) a tool call
is right when it matches without its date arguments, so that the threshold and the gate
judge the same thing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from interns.common.answers import json_equal, score_call, text_similarity
from interns.trainer.examples import Example

EVAL_BATCH = 8
# The fewest calibration answers a threshold may rest on.
MIN_CALIBRATION = 3


@dataclass
class EvalReport:
    n: int
    scores: dict[str, float]
    latency_ms_p50: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    # The confidence below which the intern defers to the expert; None: defer everything.
    defer_below: float | None = None


def calibrate(confidences: list[float], correct: list[bool], target: float) -> float | None:
    """The lowest confidence threshold whose kept answers (confidence >= threshold) are
    right at least `target` of the time, over at least MIN_CALIBRATION answers; None when
    no threshold gets there (the intern should defer every call)."""
    ranked = sorted(zip(confidences, correct, strict=True), key=lambda pair: -pair[0])
    best = None
    right = 0
    for kept, (confidence, ok) in enumerate(ranked, start=1):
        right += ok
        # Ties: a threshold keeps every answer of its confidence, so decide at the last one.
        if kept < len(ranked) and ranked[kept][0] == confidence:
            continue
        if kept >= MIN_CALIBRATION and right / kept >= target:
            best = confidence
    return best


def selective_scores(
    confidences: list[float], correct: list[bool], target: float
) -> dict[str, float]:
    """`coverage` (share of calls the intern keeps) and `served_exact_match` (right among
    them), each half of the examples judged with the threshold calibrated on the other."""
    n = len(confidences)
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    kept = right = 0
    for calibrate_on, judge in (halves, halves[::-1]):
        threshold = calibrate(
            [confidences[i] for i in calibrate_on], [correct[i] for i in calibrate_on], target
        )
        if threshold is None:
            continue
        for i in judge:
            if confidences[i] >= threshold:
                kept += 1
                right += correct[i]
    return {
        "coverage": kept / n if n else 0.0,
        "served_exact_match": right / kept if kept else 0.0,
    }


def score_answers(
    examples: list[Example], answers: list[dict[str, Any]], output_kind: str
) -> dict[str, float]:
    """The metrics of `answers` against the examples' expert answers."""
    n = max(len(examples), 1)
    if output_kind == "tool_call":
        strict = [score_call(e.answer, a) for e, a in zip(examples, answers, strict=True)]
        lenient = [
            score_call(e.answer, a, ignore_dates=True)
            for e, a in zip(examples, answers, strict=True)
        ]
        total = sum(s.arguments_total for s in strict)
        return {
            "exact_match": sum(s.exact for s in strict) / n,
            "exact_match_without_dates": sum(s.exact for s in lenient) / n,
            "argument_accuracy": sum(s.arguments_matched for s in strict) / total if total else 1.0,
            "name_accuracy": sum(s.name_match for s in strict) / n,
        }
    if output_kind == "json":
        pairs = zip(examples, answers, strict=True)
        return {"json_equal": sum(json_equal(e.answer, a) for e, a in pairs) / n}
    pairs = zip(examples, answers, strict=True)
    return {"text_similarity": sum(text_similarity(e.answer, a) for e, a in pairs) / n}


def right(example: Example, answer: dict[str, Any], output_kind: str, ignore_dates: bool) -> bool:
    """Whether `answer` counts as right: every score perfect, or for a tool call with
    `ignore_dates`, an exact match without its date arguments."""
    if output_kind == "tool_call" and ignore_dates:
        return score_call(example.answer, answer, ignore_dates=True).exact
    scores = score_answers([example], [answer], output_kind)
    return all(value == 1.0 for value in scores.values())


def evaluate(
    runtime: Any,
    examples: list[Example],
    output_kind: str,
    batch_size: int = EVAL_BATCH,
    target_precision: float = 0.95,
    ignore_dates: bool = False,
) -> EvalReport:
    """Runs the intern on every held-out example; latency is per call (batch time / size)."""
    answers: list[dict[str, Any]] = []
    latencies: list[float] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        began = time.perf_counter()
        answers.extend(runtime.answer([example.request for example in batch]))
        latencies.append((time.perf_counter() - began) * 1000 / len(batch))
    scores = score_answers(examples, answers, output_kind)
    correct = [
        right(e, a, output_kind, ignore_dates) for e, a in zip(examples, answers, strict=True)
    ]
    failures = [
        {"trace_id": e.trace_id, "expected": e.answer, "got": a}
        for e, a, ok in zip(examples, answers, correct, strict=True)
        if not ok
    ][:20]
    defer_below = None
    confidences = [a.get("confidence") for a in answers]
    if answers and all(isinstance(c, float | int) for c in confidences):
        scores.update(selective_scores(confidences, correct, target_precision))
        defer_below = calibrate(confidences, correct, target_precision)
    return EvalReport(
        n=len(examples),
        scores=scores,
        latency_ms_p50=statistics.median(latencies) if latencies else 0.0,
        failures=failures,
        defer_below=defer_below,
    )
