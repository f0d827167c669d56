"""The demo's report: every figure the issue asks for in report.json, and report.html as
one self-contained page with its plots."""

from __future__ import annotations

import json
import re

from interns.demo.figures import CallRecord
from interns.demo.plan import make_plan
from interns.demo.prices import PriceTable
from interns.demo.report import build_report, write_report


def test_the_report_has_the_figures_and_a_self_contained_page(tmp_path):
    plan = make_plan("sgd.jsonl", "sgd", 6027)
    records = [
        CallRecord(t_s=t, phase="discover", ok=True, target="expert", reason="no task matched",
                   task_id="task-a", prompt_tokens=800, completion_tokens=30, latency_ms=8)
        for t in range(100)
    ] + [
        CallRecord(t_s=100 + t, phase="serve", ok=True, target="intern", reason="full",
                   task_id="task-a", mode="full", agree=t % 10 != 0, agree_without_dates=True,
                   prompt_tokens=800, completion_tokens=30, latency_ms=900)
        for t in range(20)
    ]  # fmt: skip
    past = {
        "tasks_found": 3,
        "route_changes": [
            {"task_id": "task-a", "t_s": 60.0, "target": "intern-a", "model_version": 1,
             "mode": "shadow", "canary_share": 0.0, "changed_by": "controller",
             "reason": "intern-a v1 to shadow: loaded and warmed in 9.0 s"},
            {"task_id": "task-a", "t_s": 90.0, "target": "intern-a", "model_version": 1,
             "mode": "full", "canary_share": 0.0, "changed_by": "controller",
             "reason": "intern-a v1 to full: agreement 1.00, fallbacks 0.00 over 20 samples"},
        ],
        "jobs": [{"task_id": "task-a", "status": "succeeded", "step": 46, "total_steps": 46}],
        "models": [{"task_id": "task-a", "version": 1, "status": "serving",
                    "scores": {"exact_match": 0.93, "exact_match_without_dates": 0.97}}],
    }  # fmt: skip

    report = build_report(plan, records, past, PriceTable(), duration_s=1900, replay_s=120)

    assert report["intern_share"] == 1.0  # the last tenth of the calls
    assert report["intern_share_overall"] == 20 / 120
    assert report["intern_agreement"] == 1.0 and report["intern_agreement_strict"] == 0.9
    assert report["duration_s"] == 1900
    assert report["interns_trained"] == 1 and report["versions_registered"] == 1
    assert [p["live_agreement"] for p in report["promotions"]] == [1.0]
    assert report["cost_per_call_usd_with_interns"] < report["cost_per_call_usd_without_interns"]
    assert report["tasks"]["task-a"]["rollouts"][1]["mode"] == "full"
    assert [g["passed"] for g in report["goals"]] == [True, True, True, False]  # 31.7 min of 30

    json_path, html_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["intern_share"] == 1.0
    page = html_path.read_text()
    assert page.count("<svg") == 4
    # Nothing fetched: no script, every reference inside the page (SVG's own "#id").
    assert "<script" not in page
    assert not re.search(r'(src|href)="(?!#)', page)
    assert "PASS" in page and "FAIL" in page and "intern-a v1 to full" in page
