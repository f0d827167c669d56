"""The decisions of a rollout, as plain functions: which stage comes next, whether the
live figures of a stage allow the next one, call for a rollback, or need more samples.

A stage is judged on the comparisons of its own model version made since it began:
shadow comparisons in shadow mode, sampled expert checks of the intern's answers in canary
and full mode. A verdict needs `min_samples`; a rollback does not wait for them when the
disagreements (or fallbacks) seen already make the gate unreachable at `min_samples`, so a
bad version leaves within a handful of calls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field


class Gate(BaseModel):
    """What a version must show on live traffic, per stage."""

    min_samples: int = Field(20, ge=1, description="Comparisons a verdict needs")
    min_agreement: float = Field(0.9, ge=0, le=1, description="Least share of agreeing answers")
    max_fallback_rate: float = Field(
        0.1, ge=0, le=1, description="Largest share of calls the intern could not answer"
    )


@dataclass(frozen=True)
class Stage:
    mode: Literal["shadow", "canary", "full"]
    share: float = 0.0

    @property
    def evidence(self) -> str:
        """The kind of comparison this stage is judged on."""
        return "shadow" if self.mode == "shadow" else "check"

    def __str__(self) -> str:
        return f"canary {self.share:.0%}" if self.mode == "canary" else self.mode


def plan(canary_shares: list[float]) -> list[Stage]:
    """Shadow, a canary per share, full."""
    return [Stage("shadow"), *(Stage("canary", s) for s in canary_shares), Stage("full")]


@dataclass
class Tally:
    """Comparisons of one version: how many, how many agreed, how many fell back."""

    samples: int = 0
    agreed: int = 0
    fallbacks: int = 0

    def add(self, agree: bool, fallback: bool) -> None:
        self.samples += 1
        self.agreed += agree
        self.fallbacks += fallback

    @property
    def agreement(self) -> float:
        return self.agreed / self.samples if self.samples else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.samples if self.samples else 0.0

    def describe(self) -> str:
        return (
            f"agreement {self.agreement:.2f}, fallbacks {self.fallback_rate:.2f}"
            f" over {self.samples} samples"
        )


@dataclass
class Window:
    """The latest `size` comparisons of a serving version."""

    size: int
    _items: deque = field(default_factory=deque)

    def add(self, agree: bool, fallback: bool) -> None:
        self._items.append((agree, fallback))
        while len(self._items) > self.size:
            self._items.popleft()

    def tally(self) -> Tally:
        tally = Tally()
        for agree, fallback in self._items:
            tally.add(agree, fallback)
        return tally


@dataclass(frozen=True)
class Verdict:
    action: Literal["advance", "hold", "rollback"]
    reason: str


def judge(tally: Tally, gate: Gate, expired: bool = False) -> Verdict:
    """The verdict on a stage's figures; `expired`: the stage ran out of time."""
    # A hair of slack: (1 - 0.9) * 20 is 1.9999999999999996 in floating point.
    allowed_disagreements = (1 - gate.min_agreement) * gate.min_samples + 1e-9
    allowed_fallbacks = gate.max_fallback_rate * gate.min_samples + 1e-9
    disagreements = tally.samples - tally.agreed
    enough = tally.samples >= gate.min_samples
    if (not enough and tally.fallbacks > allowed_fallbacks) or (
        enough and tally.fallback_rate > gate.max_fallback_rate
    ):
        return Verdict(
            "rollback",
            f"fallback rate {tally.fallback_rate:.2f} > {gate.max_fallback_rate:.2f}"
            f" ({tally.describe()})",
        )
    if (not enough and disagreements > allowed_disagreements) or (
        enough and tally.agreement < gate.min_agreement
    ):
        return Verdict(
            "rollback",
            f"live agreement {tally.agreement:.2f} < {gate.min_agreement:.2f} ({tally.describe()})",
        )
    if enough:
        return Verdict("advance", tally.describe())
    if expired:
        return Verdict("rollback", f"too few samples in time: {tally.samples} < {gate.min_samples}")
    return Verdict("hold", f"{tally.samples} of {gate.min_samples} samples")


def watch(window: Window, gate: Gate) -> Verdict:
    """The verdict on a serving version's latest comparisons: rollback or hold."""
    tally = window.tally()
    verdict = judge(tally, gate)
    return verdict if verdict.action == "rollback" else Verdict("hold", tally.describe())
