"""The serve-time matcher of a split signature: which of its sub-tasks a call belongs to.

The miner splits a signature whose calls are distinct tasks (`interns.miner.subclusters`)
and learns, from embedding clusters of the requests, a linear model over cheap features
of the last user message: its lower-cased words and word pairs. The router runs that
model on each call of the signature. Both import it from here so they compute the same
features; matching a call costs tens of microseconds (dict lookups, no embedding model).

A matcher travels as a plain dict (`TaskMatcher.to_dict`) in the task events and the
`tasks` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FEATURES = "words+pairs/v1"
_WORD = re.compile(r"[a-z0-9']+")


def request_text(body: Mapping[str, Any]) -> str:
    """The last user message of an OpenAI request body: what the call asks for."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


def text_features(text: str) -> list[str]:
    """Lower-cased words and pairs of adjacent words."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


class MatcherError(ValueError):
    """A matcher dict that cannot be read."""


@dataclass(frozen=True)
class TaskMatcher:
    """A linear model: the sub-task with the highest bias + sum of its feature weights."""

    task_ids: tuple[str, ...]
    bias: tuple[float, ...]
    weights: Mapping[str, tuple[float, ...]]

    def scores(self, text: str) -> list[float]:
        scores = list(self.bias)
        weights = self.weights
        for feature in text_features(text):
            row = weights.get(feature)
            if row is not None:
                scores = [s + w for s, w in zip(scores, row, strict=True)]
        return scores

    def match(self, text: str) -> str:
        """The id of the sub-task of the call whose last user message is `text`."""
        scores = self.scores(text)
        return self.task_ids[scores.index(max(scores))]

    def match_request(self, body: Mapping[str, Any]) -> str:
        return self.match(request_text(body))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": FEATURES,
            "task_ids": list(self.task_ids),
            "bias": list(self.bias),
            "weights": {feature: list(row) for feature, row in self.weights.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskMatcher:
        """Reads `to_dict`'s output; raises MatcherError naming what is wrong."""
        if data.get("features") != FEATURES:
            raise MatcherError(
                f"matcher features {data.get('features')!r} unknown; expected {FEATURES!r}"
            )
        task_ids = tuple(data.get("task_ids") or ())
        bias = tuple(float(b) for b in data.get("bias") or ())
        if len(task_ids) < 2 or len(bias) != len(task_ids):
            raise MatcherError(
                f"a matcher needs >= 2 task ids and one bias each; got {len(task_ids)} ids,"
                f" {len(bias)} biases"
            )
        weights: dict[str, tuple[float, ...]] = {}
        for feature, row in (data.get("weights") or {}).items():
            if len(row) != len(task_ids):
                raise MatcherError(
                    f"weights of {feature!r} hold {len(row)} values for {len(task_ids)} tasks"
                )
            weights[feature] = tuple(float(w) for w in row)
        return cls(task_ids, bias, weights)


def matcher_from_linear(
    task_ids: Sequence[str],
    bias: Sequence[float],
    weights: Mapping[str, Sequence[float]],
    max_features: int,
) -> TaskMatcher:
    """A matcher that keeps the `max_features` features with the largest weights."""
    ranked = sorted(weights.items(), key=lambda item: -max(abs(w) for w in item[1]))
    kept = {
        feature: tuple(round(float(w), 5) for w in row)
        for feature, row in ranked[:max_features]
        if any(row)
    }
    return TaskMatcher(tuple(task_ids), tuple(round(float(b), 5) for b in bias), kept)
