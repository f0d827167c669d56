"""The demo's figures, computed from its own call records and the stack's history.

Every call the demo sends becomes a `CallRecord`: where it was served (the gateway's route
decision), whether the answer matches the workload's reference (the replay expert's answer:
tool calls by name and arguments, dates once compared and once skipped, as the workload
README asks), its latency and tokens. From these and the route changes the report gets the
share of calls served by interns over time, the agreement of the intern-served calls, what
a call costs and takes with and without interns, and whether any task was promoted on a
live agreement below its gate.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from interns.common.answers import score_call
from interns.demo.prices import PriceTable

ROUTES = ("intern", "expert", "fallback", "deferred")
# The share "by the end of the replay": over the last tenth of the calls.
FINAL_SHARE_TAIL = 0.1
AGREEMENT_IN_REASON = re.compile(r"agreement (\d+(?:\.\d+)?)")


@dataclass
class CallRecord:
    """One replayed call as the demo saw it."""

    t_s: float
    phase: str
    ok: bool
    error: str = ""
    target: str = ""
    reason: str = ""
    task_id: str = ""
    mode: str = ""
    model: str = ""
    model_version: int = 0
    agree: bool = False
    agree_without_dates: bool = False
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def route(self) -> str:
        """intern, expert, fallback (meant for an intern that failed, answered by the
        expert) or deferred (meant for an intern that chose not to answer it)."""
        if self.target == "intern":
            return "intern"
        for route in ("fallback", "deferred"):
            if self.reason.startswith(f"{route}:"):
                return route
        return "expert"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "route": self.route}


def compare(answer: dict[str, Any], reference: dict[str, Any]) -> tuple[bool, bool]:
    """(exact match, exact match with date arguments skipped) of `answer` against the
    reference: tool calls by name and parsed arguments, other answers by their text."""
    if reference.get("tool_calls"):
        return (
            score_call(reference, answer).exact,
            score_call(reference, answer, ignore_dates=True).exact,
        )
    same = (answer.get("content") or "").strip() == (reference.get("content") or "").strip()
    return same, same


def share_series(records: list[CallRecord], bin_s: float) -> list[dict[str, Any]]:
    """Calls and the share of each route per `bin_s` seconds of the replay."""
    bins: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ROUTES, 0))
    for record in records:
        if record.ok:
            bins[int(record.t_s // bin_s)][record.route] += 1
    series = []
    for index in sorted(bins):
        counts = bins[index]
        total = sum(counts.values())
        series.append(
            {
                "t_s": round(index * bin_s, 1),
                "calls": total,
                **{f"{route}_share": counts[route] / total for route in ROUTES},
            }
        )
    return series


def route_shares(records: list[CallRecord]) -> dict[str, float]:
    answered = [r for r in records if r.ok]
    n = max(len(answered), 1)
    return {route: sum(r.route == route for r in answered) / n for route in ROUTES}


def fallback_reasons(records: list[CallRecord], top: int = 5) -> dict[str, int]:
    """Why calls meant for an intern went to the expert, the most frequent first (numbers
    in the reasons, such as confidences, are left out so that alike reasons count as one)."""
    reasons = Counter(
        re.sub(r"\d+(\.\d+)?", "N", r.reason) for r in records if r.ok and r.route == "fallback"
    )
    return dict(reasons.most_common(top))


def final_share(records: list[CallRecord], tail: float = FINAL_SHARE_TAIL) -> float:
    """Share of the intern-served calls among the last `tail` of the answered calls."""
    answered = sorted((r for r in records if r.ok), key=lambda r: r.t_s)
    if not answered:
        return 0.0
    last = answered[-max(1, round(len(answered) * tail)) :]
    return sum(r.route == "intern" for r in last) / len(last)


def agreement(records: list[CallRecord]) -> dict[str, Any]:
    """Agreement with the expert of the calls interns served."""
    served = [r for r in records if r.ok and r.route == "intern"]
    n = len(served)
    return {
        "intern_calls": n,
        "intern_agreement": sum(r.agree_without_dates for r in served) / n if n else None,
        "intern_agreement_strict": sum(r.agree for r in served) / n if n else None,
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def costs(records: list[CallRecord], prices: PriceTable, check_share: float) -> dict[str, Any]:
    """Cost and latency per call, with interns (as served) and without (every call on the
    expert). The expert's price and latency come from `prices` and each call's tokens; an
    intern-served call costs its measured time on the CPU, plus the expert check the router
    samples (`check_share`); a shadowed call costs the expert and an intern's time."""
    answered = [r for r in records if r.ok]
    expert_overheads = [r.latency_ms for r in answered if r.route != "intern"]
    overhead = _median(expert_overheads) or 0.0
    intern_latencies = [r.latency_ms for r in answered if r.route == "intern"]
    intern_ms = _median(intern_latencies) or 0.0
    with_cost, without_cost, with_latency, without_latency = [], [], [], []
    for r in answered:
        expert_cost = prices.expert_cost(r.prompt_tokens, r.completion_tokens)
        expert_ms = prices.expert_latency_ms(r.completion_tokens)
        without_cost.append(expert_cost)
        measured_expert = r.latency_ms if r.route != "intern" else overhead
        without_latency.append(measured_expert + expert_ms)
        if r.route == "intern":
            with_cost.append(prices.intern_cost(r.latency_ms) + check_share * expert_cost)
            with_latency.append(r.latency_ms)
        else:
            shadowed = r.mode == "shadow" and r.route == "expert"
            with_cost.append(expert_cost + (prices.intern_cost(intern_ms) if shadowed else 0.0))
            with_latency.append(r.latency_ms + expert_ms)
    without_total, with_total = sum(without_cost), sum(with_cost)
    return {
        "prices": prices.model_dump(),
        "cost_per_call_usd_without_interns": _mean(without_cost),
        "cost_per_call_usd_with_interns": _mean(with_cost),
        "cost_saved_share": (1 - with_total / without_total) if without_total else None,
        "latency_ms_mean_without_interns": _mean(without_latency),
        "latency_ms_mean_with_interns": _mean(with_latency),
        "latency_ms_p50_without_interns": _median(without_latency),
        "latency_ms_p50_with_interns": _median(with_latency),
        "intern_latency_ms_p50": _median(intern_latencies),
        "gateway_overhead_ms_p50": overhead,
    }


def promotions(changes: list[dict[str, Any]], min_agreement: float) -> list[dict[str, Any]]:
    """Every route change that gave an intern more traffic (canary or full), with the live
    agreement it was decided on (from the controller's reason) and whether that was below
    the gate; a promotion whose agreement is not stated counts as below."""
    found = []
    for change in changes:
        if change["mode"] not in ("canary", "full") or change["target"] == "expert":
            continue
        if change["reason"].startswith("rollback"):
            continue
        match = AGREEMENT_IN_REASON.search(change["reason"])
        live = float(match.group(1)) if match else None
        found.append(
            {
                **change,
                "live_agreement": live,
                "below_gate": live is None or live + 1e-9 < min_agreement,
            }
        )
    return found


def per_task(
    records: list[CallRecord],
    changes: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    models: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Per task: calls, the share interns served, their agreement with the expert, the
    training jobs, the model versions (offline scores) and the rollout history."""
    tasks: dict[str, dict[str, Any]] = {}

    def entry(task_id: str) -> dict[str, Any]:
        return tasks.setdefault(
            task_id, {"calls": 0, "intern_calls": 0, "jobs": [], "models": [], "rollouts": []}
        )

    by_task: dict[str, list[CallRecord]] = defaultdict(list)
    for r in records:
        if r.ok and r.task_id:
            by_task[r.task_id].append(r)
    for task_id, calls in by_task.items():
        item = entry(task_id)
        item["calls"] = len(calls)
        item.update(agreement(calls))
        item["intern_share"] = item["intern_calls"] / len(calls)
    for job in jobs:
        entry(job["task_id"])["jobs"].append(job)
    for model in models:
        entry(model["task_id"])["models"].append(model)
    for change in changes:
        entry(change["task_id"])["rollouts"].append(change)
    return dict(sorted(tasks.items(), key=lambda item: -item[1]["calls"]))


def goals(report: dict[str, Any], budget_s: float) -> list[dict[str, Any]]:
    """The issue's goals, each with the figure measured and PASS or FAIL."""
    share = report["intern_share"]
    agreement_value = report["intern_agreement"]
    below = [p for p in report["promotions"] if p["below_gate"]]
    return [
        {
            "goal": "at least 60% of the calls served by interns by the end of the replay",
            "measured": f"{share:.1%} of the last {FINAL_SHARE_TAIL:.0%} of the calls",
            "passed": share >= 0.6,
        },
        {
            "goal": "at least 95% exact tool-call agreement with the expert on intern-served"
            " calls (dates skipped, as the workload README allows)",
            "measured": "no call served by an intern"
            if agreement_value is None
            else f"{agreement_value:.1%} of {report['intern_calls']} calls"
            f" ({report['intern_agreement_strict']:.1%} with dates compared)",
            "passed": agreement_value is not None and agreement_value >= 0.95,
        },
        {
            "goal": "no task promoted on a live agreement below its gate",
            "measured": f"{len(below)} of {len(report['promotions'])} promotions below the gate",
            "passed": not below,
        },
        {
            "goal": f"the whole demo within its budget ({budget_s / 60:.0f} minutes)",
            "measured": f"{report['duration_s'] / 60:.1f} minutes",
            "passed": report["duration_s"] <= budget_s,
        },
    ]
