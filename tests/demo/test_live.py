"""The demo's live view and its plain progress lines show traffic, tasks, jobs, rollouts."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from interns.demo.figures import CallRecord
from interns.demo.live import DemoState, LiveView, Snapshot, live_agreement, plain_line
from interns.demo.plan import make_plan

METRICS = """# HELP interns_agreement Live agreement
# TYPE interns_agreement gauge
interns_agreement{model="intern-a",service="deployer",stage="canary",task="task-a"} 0.95
"""


def snapshot() -> Snapshot:
    task = SimpleNamespace(task_id="task-a", size=240, traffic_share=0.04, label="tools: Find")
    job = SimpleNamespace(
        job_id="j1", task_id="task-a", base_model="smollm2-135m-instruct", status="running",
        step=12, total_steps=46, loss=0.512, eta_seconds=260.0, created=1,
    )  # fmt: skip
    rollout = SimpleNamespace(
        task_id="task-a", model_version=1, mode="canary", canary_share=0.5,
        reason="intern-a v1 to canary 50%: agreement 0.95 over 20 samples",
    )  # fmt: skip
    queued = [
        SimpleNamespace(
            job_id=f"q{n}",
            task_id=f"task-q{n}",
            base_model="smollm2-135m-instruct",
            status="queued",
            step=0,
            total_steps=0,
            loss=None,
            eta_seconds=None,
            created=2,
        )
        for n in range(3)
    ]
    return Snapshot(
        tasks=[task], jobs=[job, *queued], rollouts=[rollout], agreement=live_agreement(METRICS)
    )


def state() -> DemoState:
    records = [
        CallRecord(t_s=100, phase="serve", ok=True, target="intern", reason="canary: intern share"),
        CallRecord(t_s=101, phase="serve", ok=True, target="expert", reason="fallback: timeout"),
        CallRecord(t_s=102, phase="serve", ok=True, target="expert", reason="no task matched"),
        CallRecord(t_s=103, phase="serve", ok=True, target="expert", reason="no task matched"),
        CallRecord(t_s=104, phase="serve", ok=True, target="expert", reason="no task matched"),
        CallRecord(
            t_s=105,
            phase="serve",
            ok=True,
            target="expert",
            reason="deferred: intern deferred (confidence 0.2)",
        ),
    ]
    return DemoState(
        elapsed_s=400, phase="serve", rate=10, records=records, replay_elapsed_s=110,
        savings={"intern_calls": 1, "intern_agreement": 1.0},
    )  # fmt: skip


def test_the_deployers_metrics_give_each_rollouts_live_agreement():
    assert live_agreement(METRICS) == {"task-a": 0.95}


def test_the_live_view_shows_traffic_tasks_jobs_and_rollouts():
    plan = make_plan("sgd.jsonl", "sgd", 6027)
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(LiveView(plan, console).render(state(), snapshot()))
    text = out.getvalue()
    assert "0:06:40 of at most 0:30:00" in text
    assert "intern" in text and "deferred" in text
    assert "16.7%" in text and "50.0%" in text  # intern, fallback, deferred 1/6, expert 3/6
    assert "tasks found: 1" in text and "task-a" in text
    assert "12/46" in text and "loss 0.512" in text and "ETA 0:04:20" in text
    assert "canary" in text and "0.95" in text


def test_a_plain_line_says_the_same_in_one_line():
    line = plain_line(state(), snapshot())
    assert line.startswith("[0:06:40] serve 6 calls;")
    assert "intern 17% deferred 17% fallback 17% expert 50%" in line
    assert "active: task-a running 12/46 loss 0.51; 3 queued" in line
    assert "task-q0" not in line  # queued jobs are counted, not named
    assert "rollouts: task-a canary 50% agreement 0.95" in line
