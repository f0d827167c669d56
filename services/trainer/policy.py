"""When a task deserves an intern (or a new one), and when a candidate may be served.

`TrainingPolicy.decide` looks at a task's statistics (a `TaskChanged` event or a `tasks`
row: both have the fields it reads): enough examples, enough of the traffic or of the
expert's cost, answers consistent enough to learn. `TrainingPolicy.grew_enough` keeps a
task from being retrained for every new trace. `EvaluationGate.check` decides whether an
evaluated candidate is exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field


class TaskStats(Protocol):
    task_id: str
    size: int
    traffic_share: float
    output_kind: str
    consistency: float
    expert_cost_usd: float


@dataclass(frozen=True)
class Decision:
    train: bool
    reasons: list[str] = field(default_factory=list)


class TrainingPolicy(BaseModel):
    """Configured as TRAINER_POLICY__<FIELD> (for example TRAINER_POLICY__MIN_EXAMPLES)."""

    min_examples: int = Field(100, ge=1, description="Traces a task needs before training")
    min_traffic_share: float = Field(
        0.02, ge=0, le=1, description="Share of all traffic a task needs (or the cost below)"
    )
    min_expert_cost_usd: float = Field(
        0.0,
        ge=0,
        description="Expert cost that qualifies a task however small its share (0: off)",
    )
    min_consistency: float = Field(
        0.8, ge=0, le=1, description="Share of answers with the task's most common shape"
    )
    output_kinds: list[str] = Field(
        default_factory=lambda: ["tool_call", "json", "text"],
        description="Output kinds interns are trained for",
    )
    retrain_growth: float = Field(
        1.5,
        ge=1,
        description="A new job only when the task has grown by this factor since the last one",
    )

    def decide(self, task: TaskStats) -> Decision:
        """Whether `task` deserves an intern, with the reasons either way."""
        reasons, train = [], True

        def check(ok: bool, passed: str, failed: str) -> None:
            nonlocal train
            train = train and ok
            reasons.append(passed if ok else failed)

        check(
            task.size >= self.min_examples,
            f"{task.size} examples >= {self.min_examples}",
            f"only {task.size} examples (< {self.min_examples})",
        )
        share_ok = task.traffic_share >= self.min_traffic_share
        cost_ok = bool(self.min_expert_cost_usd) and (
            task.expert_cost_usd >= self.min_expert_cost_usd
        )
        check(
            share_ok or cost_ok,
            f"traffic share {task.traffic_share:.1%} >= {self.min_traffic_share:.1%}"
            if share_ok
            else f"expert cost ${task.expert_cost_usd:.2f} >= ${self.min_expert_cost_usd:.2f}",
            f"traffic share {task.traffic_share:.1%} < {self.min_traffic_share:.1%}"
            + (
                f" and expert cost ${task.expert_cost_usd:.2f} < ${self.min_expert_cost_usd:.2f}"
                if self.min_expert_cost_usd
                else ""
            ),
        )
        check(
            task.consistency >= self.min_consistency,
            f"consistency {task.consistency:.2f} >= {self.min_consistency:.2f}",
            f"consistency {task.consistency:.2f} < {self.min_consistency:.2f}",
        )
        check(
            task.output_kind in self.output_kinds,
            f"output kind {task.output_kind}",
            f"output kind {task.output_kind} is not trained",
        )
        return Decision(train, reasons)

    def grew_enough(self, size_now: int, size_at_last_job: int) -> bool:
        return size_now >= size_at_last_job * self.retrain_growth


class EvaluationGate(BaseModel):
    """The scores a candidate needs to be exported, by output kind. Configured as
    TRAINER_GATE__<FIELD>. `exact_match_without_dates` lets a task whose traffic cannot
    give dates (the expert's date arguments are not in the conversation) pass on the rest."""

    tool_call: float = Field(0.9, ge=0, le=1, description="Minimum exact tool-call match")
    json_equal: float = Field(0.9, ge=0, le=1, description="Minimum JSON equality")
    text_similarity: float = Field(0.7, ge=0, le=1, description="Minimum text similarity")
    ignore_dates: bool = Field(
        False,
        description="Judge tool calls by exact match without date arguments (selective: the"
        " confidence threshold is calibrated on the same judgement)",
    )
    min_eval_examples: int = Field(5, ge=1, description="Held-out examples the verdict needs")
    selective: bool = Field(
        True,
        description="Tool calls and JSON: the intern defers to the expert below a confidence"
        " threshold calibrated on held-out answers; judge it by the answers it keeps"
        " (served_exact_match against the minimum above) and how many it keeps",
    )
    target_precision: float = Field(
        0.95, ge=0, le=1, description="Share of kept answers that must be right (calibration)"
    )
    min_coverage: float = Field(
        0.2, ge=0, le=1, description="Least share of held-out calls a selective intern keeps"
    )

    def is_selective(self, output_kind: str) -> bool:
        return self.selective and output_kind in {"tool_call", "json"}

    def check(self, output_kind: str, scores: dict[str, float], n: int) -> Decision:
        if n < self.min_eval_examples:
            return Decision(False, [f"only {n} held-out examples (< {self.min_eval_examples})"])
        if self.is_selective(output_kind) and "coverage" in scores:
            served, coverage = scores.get("served_exact_match", 0.0), scores["coverage"]
            minimum = self.tool_call if output_kind == "tool_call" else self.json_equal
            passed = served >= minimum and coverage >= self.min_coverage
            return Decision(
                passed,
                [
                    f"served_exact_match {served:.3f} {'>=' if served >= minimum else '<'}"
                    f" {minimum:.2f} and coverage {coverage:.2f}"
                    f" {'>=' if coverage >= self.min_coverage else '<'}"
                    f" {self.min_coverage:.2f} on {n}"
                ],
            )
        metric, threshold = {
            "tool_call": (
                "exact_match_without_dates" if self.ignore_dates else "exact_match",
                self.tool_call,
            ),
            "json": ("json_equal", self.json_equal),
            "text": ("text_similarity", self.text_similarity),
        }[output_kind]
        score = scores.get(metric)
        if score is None:
            return Decision(False, [f"no {metric} score"])
        passed = score >= threshold
        relation = ">=" if passed else "<"
        return Decision(passed, [f"{metric} {score:.3f} {relation} {threshold:.2f} on {n}"])
