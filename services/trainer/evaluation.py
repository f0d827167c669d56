"""Scoring a trained intern on held-out expert answers, with the metric its output needs.

Tool calls: `exact_match` (name and every argument), `exact_match_without_dates`,
`argument_accuracy` (matched arguments over all arguments of either side, over the set),
`name_accuracy`. JSON answers: `json_equal`. Free text: `text_similarity` (0..1).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from interns.common.answers import json_equal, score_call, text_similarity
from interns.trainer.examples import Example

EVAL_BATCH = 8


@dataclass
class EvalReport:
    n: int
    scores: dict[str, float]
    latency_ms_p50: float
    failures: list[dict[str, Any]] = field(default_factory=list)


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


def evaluate(
    runtime: Any, examples: list[Example], output_kind: str, batch_size: int = EVAL_BATCH
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
    failures = [
        {"trace_id": e.trace_id, "expected": e.answer, "got": a}
        for e, a in zip(examples, answers, strict=True)
        if score_answers([e], [a], output_kind) != dict.fromkeys(scores, 1.0)
    ][:20]
    return EvalReport(
        n=len(examples),
        scores=scores,
        latency_ms_p50=statistics.median(latencies) if latencies else 0.0,
        failures=failures,
    )
