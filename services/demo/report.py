"""The demo's report: `report.json` (the raw figures) and `report.html` (the same with
plots), from the demo's call records and the stack's history in the database (route
changes, training jobs, model versions, tasks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from interns.common.db import ModelVersion, RouteChange, Task, Trace, TrainingJob
from interns.demo import figures
from interns.demo.figures import CallRecord
from interns.demo.plan import DemoPlan
from interns.demo.prices import PriceTable


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def history(engine: Engine, replay_started: datetime) -> dict[str, Any]:
    """Route changes, jobs, model versions and the number of tasks, as plain data; times
    as seconds after the replay started."""

    def since(moment: datetime) -> float:
        return round((_utc(moment) - replay_started).total_seconds(), 1)

    with engine.connect() as connection:
        changes = connection.execute(select(RouteChange).order_by(RouteChange.id)).all()
        jobs = connection.execute(select(TrainingJob).order_by(TrainingJob.created_at)).all()
        models = connection.execute(select(ModelVersion).order_by(ModelVersion.created_at)).all()
        tasks = connection.execute(
            select(func.count()).select_from(Task).where(Task.status == "active")
        ).scalar_one()
    return {
        "tasks_found": tasks,
        "route_changes": [
            {
                "task_id": c.task_id,
                "t_s": since(c.changed_at),
                "target": c.target,
                "model_version": c.model_version,
                "mode": c.mode,
                "canary_share": c.canary_share,
                "changed_by": c.changed_by,
                "reason": c.reason,
            }
            for c in changes
        ],
        "jobs": [
            {
                "job_id": j.job_id,
                "task_id": j.task_id,
                "base_model": j.base_model,
                "status": j.status,
                "step": j.step,
                "total_steps": j.total_steps,
                "loss": j.loss,
                "created_t_s": since(j.created_at),
                "ended_t_s": since(j.updated_at) if j.status not in ("queued", "running") else None,
                "model": j.model,
                "model_version": j.model_version,
                "error": j.error,
            }
            for j in jobs
        ],
        "models": [
            {
                "model": m.model,
                "version": m.version,
                "task_id": m.task_id,
                "base_model": m.base_model,
                "status": m.status,
                "scores": m.scores,
                "latency_ms": m.latency_ms,
                "created_t_s": since(m.created_at),
            }
            for m in models
        ],
    }


def traces_stored(engine: Engine, trace_ids: list[str]) -> int:
    stored = 0
    with engine.connect() as connection:
        for start in range(0, len(trace_ids), 500):
            chunk = trace_ids[start : start + 500]
            stored += connection.execute(
                select(func.count()).where(Trace.trace_id.in_(chunk))
            ).scalar_one()
    return stored


def build_report(
    plan: DemoPlan,
    records: list[CallRecord],
    past: dict[str, Any],
    prices: PriceTable,
    duration_s: float,
    replay_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of the report, goals included."""
    answered = [r for r in records if r.ok]
    bin_s = max(10.0, round(replay_s / 60))
    report: dict[str, Any] = {
        "workload": plan.workload,
        "workload_format": plan.workload_format,
        "budget_s": plan.budget_s,
        "duration_s": round(duration_s, 1),
        "replay_s": round(replay_s, 1),
        "calls": len(records),
        "answered": len(answered),
        "failed": len(records) - len(answered),
        "errors": sorted({r.error for r in records if not r.ok})[:10],
        "intern_share": figures.final_share(records),
        "intern_share_definition": f"share of the last {figures.FINAL_SHARE_TAIL:.0%} of the"
        " answered calls that interns served",
        "intern_share_overall": figures.route_shares(records)["intern"],
        "route_shares_overall": figures.route_shares(records),
        "fallback_reasons": figures.fallback_reasons(records),
        **figures.agreement(records),
        "agreement_rule": "exact tool-call match (name and every argument) with the expert's"
        " answer; intern_agreement skips date arguments (the SGD dialogues never say what day"
        " it is, see the workload README), intern_agreement_strict compares them",
        "agreement_with_reference_all_calls": (
            sum(r.agree for r in answered) / len(answered) if answered else None
        ),
        **figures.costs(records, prices, plan.check_share),
        "tasks_found": past["tasks_found"],
        "interns_trained": sum(j["status"] == "succeeded" for j in past["jobs"]),
        "versions_registered": sum(m["status"] != "rejected" for m in past["models"]),
        "promotions": figures.promotions(past["route_changes"], plan.min_agreement),
        "share_over_time": {"bin_s": bin_s, "series": figures.share_series(records, bin_s)},
        "tasks": figures.per_task(records, past["route_changes"], past["jobs"], past["models"]),
        "plan": plan.model_dump(),
        **(extra or {}),
    }
    report["goals"] = figures.goals(report, plan.budget_s)
    return report


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Writes report.json and report.html into `out`."""
    from interns.demo.html import render_html

    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path.write_text(render_html(report))
    return json_path, html_path
