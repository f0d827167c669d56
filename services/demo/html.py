"""report.html: the report's figures with plots, one self-contained file (inline SVG drawn
by matplotlib, no script, nothing fetched)."""

from __future__ import annotations

import html
import io
from typing import Any

ROUTE_COLOURS = {
    "intern": "#2e7d32",
    "deferred": "#81c784",
    "fallback": "#f9a825",
    "expert": "#90a4ae",
}


def intern_share_of(change: dict[str, Any]) -> float:
    """The share of a task's calls its route gives the intern."""
    if change["target"] == "expert" or change.get("pinned"):
        return 0.0
    return {"canary": change["canary_share"], "full": 1.0}.get(change["mode"], 0.0)


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float = 8.0, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def share_plot(report: dict[str, Any]) -> str:
    series = report["share_over_time"]["series"]
    figure, axes = _figure()
    if series:
        minutes = [point["t_s"] / 60 for point in series]
        axes.stackplot(
            minutes,
            *[[point[f"{route}_share"] for point in series] for route in ROUTE_COLOURS],
            labels=list(ROUTE_COLOURS),
            colors=list(ROUTE_COLOURS.values()),
            step="post",
        )
    axes.set_xlabel("minutes into the replay")
    axes.set_ylabel("share of calls")
    axes.set_ylim(0, 1)
    axes.axhline(0.6, color="black", linestyle=":", linewidth=1)
    axes.legend(loc="upper left", fontsize="small")
    axes.set_title("who served the calls (dotted: the 60% goal)")
    return _svg(figure)


def rollout_plot(report: dict[str, Any]) -> str:
    """Each task's intern share by its route, over time."""
    figure, axes = _figure()
    end = report["replay_s"] / 60
    drawn = 0
    for task_id, task in report["tasks"].items():
        if not task["rollouts"]:
            continue
        times, shares = [0.0], [0.0]
        for change in task["rollouts"]:
            share = intern_share_of(change)
            times.append(max(change["t_s"], 0) / 60)
            shares.append(share)
        times.append(end)
        shares.append(shares[-1])
        axes.step(times, shares, where="post", label=task_id)
        drawn += 1
    axes.set_xlabel("minutes into the replay")
    axes.set_ylabel("intern share of the task")
    axes.set_ylim(-0.05, 1.05)
    if drawn:
        axes.legend(loc="upper left", fontsize="x-small")
    else:
        axes.text(0.5, 0.5, "no rollout", ha="center", transform=axes.transAxes)
    axes.set_title("rollouts: shadow (0), canary (its share), full (1)")
    return _svg(figure)


def quality_plot(report: dict[str, Any]) -> str:
    figure, axes = _figure()
    names, exact, without = [], [], []
    for task_id, task in report["tasks"].items():
        for model in task["models"]:
            names.append(f"{task_id} v{model['version']}")
            exact.append(model["scores"].get("exact_match", 0.0))
            without.append(model["scores"].get("exact_match_without_dates", 0.0))
        if task.get("intern_calls"):
            names.append(f"{task_id} live")
            exact.append(task["intern_agreement_strict"])
            without.append(task["intern_agreement"])
    if names:
        positions = range(len(names))
        axes.barh([p - 0.2 for p in positions], exact, height=0.4, label="exact")
        axes.barh([p + 0.2 for p in positions], without, height=0.4, label="dates skipped")
        axes.set_yticks(list(positions), names, fontsize="x-small")
        axes.legend(fontsize="small")
    else:
        axes.text(0.5, 0.5, "no intern evaluated", ha="center", transform=axes.transAxes)
    axes.set_xlim(0, 1)
    axes.axvline(0.95, color="black", linestyle=":", linewidth=1)
    axes.set_title("agreement with the expert: held-out (v…) and live")
    return _svg(figure)


def savings_plot(report: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cost, latency) = plt.subplots(1, 2, figsize=(8.0, 2.4))
    labels = ["expert only", "with interns"]
    cost.bar(
        labels,
        [
            (report["cost_per_call_usd_without_interns"] or 0) * 1000,
            (report["cost_per_call_usd_with_interns"] or 0) * 1000,
        ],
        color=["#90a4ae", "#2e7d32"],
    )
    cost.set_title("cost per 1,000 calls (USD)")
    latency.bar(
        labels,
        [
            report["latency_ms_mean_without_interns"] or 0,
            report["latency_ms_mean_with_interns"] or 0,
        ],
        color=["#90a4ae", "#2e7d32"],
    )
    latency.set_title("mean latency per call (ms)")
    return _svg(figure)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{value:.1%}"
    if kind == "$":
        return f"${value:.6f}"
    if kind == "ms":
        return f"{value:.0f} ms"
    return str(value)


def render_html(report: dict[str, Any]) -> str:
    goals = _table(
        ["goal", "measured", "verdict"],
        [[g["goal"], g["measured"], "PASS" if g["passed"] else "FAIL"] for g in report["goals"]],
    )
    summary = _table(
        ["figure", "value"],
        [
            ["calls answered / sent", f"{report['answered']} / {report['calls']}"],
            ["intern share at the end", _fmt(report["intern_share"], "%")],
            ["intern share over the whole replay", _fmt(report["intern_share_overall"], "%")],
            ["intern-served calls", report["intern_calls"]],
            ["agreement, dates skipped", _fmt(report["intern_agreement"], "%")],
            ["agreement, dates compared", _fmt(report["intern_agreement_strict"], "%")],
            ["tasks found", report["tasks_found"]],
            ["interns trained", report["interns_trained"]],
            ["versions that passed the offline gate", report["versions_registered"]],
            ["cost per call, expert only", _fmt(report["cost_per_call_usd_without_interns"], "$")],
            ["cost per call, with interns", _fmt(report["cost_per_call_usd_with_interns"], "$")],
            ["latency p50, expert only", _fmt(report["latency_ms_p50_without_interns"], "ms")],
            ["latency p50, with interns", _fmt(report["latency_ms_p50_with_interns"], "ms")],
            ["duration", f"{report['duration_s'] / 60:.1f} min of {report['budget_s'] / 60:.0f}"],
        ],
    )
    task_rows = []
    history_rows = []
    for task_id, task in report["tasks"].items():
        if not (task["jobs"] or task["rollouts"]) and task["calls"] < 50:
            continue
        best = max((m["scores"].get("exact_match", 0.0) for m in task["models"]), default=None)
        task_rows.append(
            [
                task_id,
                task["calls"],
                _fmt(task.get("intern_share"), "%"),
                _fmt(task.get("intern_agreement"), "%"),
                _fmt(task.get("intern_agreement_strict"), "%"),
                ", ".join(f"{j['status']} {j['step']}/{j['total_steps']}" for j in task["jobs"])
                or "-",
                _fmt(best),
            ]
        )
        for change in task["rollouts"]:
            history_rows.append(
                [
                    task_id,
                    f"{change['t_s'] / 60:.1f}",
                    change["mode"],
                    change["target"],
                    change["changed_by"],
                    change["reason"],
                ]
            )
    tasks = _table(
        [
            "task",
            "calls",
            "intern share",
            "live agreement (dates skipped)",
            "live agreement (dates compared)",
            "training jobs",
            "best held-out exact match",
        ],
        task_rows,
    )
    rollouts = _table(["task", "minute", "mode", "target", "by", "why"], history_rows)
    fallbacks = _table(
        ["why a call meant for an intern went to the expert", "calls"],
        [[reason, count] for reason, count in report.get("fallback_reasons", {}).items()],
    )
    plots = "".join(
        f"<figure>{plot(report)}</figure>"
        for plot in (share_plot, rollout_plot, quality_plot, savings_plot)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Interns demo report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }}
figure {{ margin: 1em 0; }}
</style></head><body>
<h1>Interns demo: the flywheel on {html.escape(report["workload"])}</h1>
<h2>Goals</h2>{goals}
<h2>Figures</h2>{summary}
<p>{html.escape(report["intern_share_definition"])}. {html.escape(report["agreement_rule"])}.
Expert prices and latency from the price table ({html.escape(report["prices"]["expert_model"])});
an intern's cost is its measured serving time.</p>
<h2>Plots</h2>{plots}
<h2>Tasks</h2>{tasks}
<h2>Rollout history</h2>{rollouts}
<h2>Fallbacks</h2>{fallbacks}
</body></html>
"""
