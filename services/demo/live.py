"""What the demo shows while it runs: a rich Live view in a terminal, plain progress lines
elsewhere (CI, pipes).

`Snapshot` is one look at the stack, taken about once a second: tasks, training jobs and
rollouts from the control API (TRAINER_ADDR), the live agreement of each rollout from the
deploy controller's metrics, and the demo's own call records for traffic and savings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from interns.api.v1 import control_pb2, control_pb2_grpc
from interns.demo.figures import ROUTES, CallRecord, route_shares
from interns.demo.plan import DemoPlan

RECENT_S = 30.0
ACTIVE_JOBS = ("queued", "running")


@dataclass
class Snapshot:
    tasks: list[Any] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    rollouts: list[Any] = field(default_factory=list)
    agreement: dict[str, float] = field(default_factory=dict)
    error: str = ""


class StackWatcher:
    """Reads the control API and the deploy controller's metrics; cheap enough for 1 Hz."""

    def __init__(self, control_addr: str, deployer_metrics_url: str):
        self._channel = grpc.insecure_channel(control_addr)
        self._control = control_pb2_grpc.ControlServiceStub(self._channel)
        self._metrics_url = deployer_metrics_url
        self._http = httpx.Client(timeout=2.0)

    def look(self) -> Snapshot:
        snapshot = Snapshot()
        try:
            snapshot.tasks = list(
                self._control.ListTasks(control_pb2.ListTasksRequest(limit=0), timeout=5).tasks
            )
            snapshot.jobs = list(
                self._control.ListTrainingJobs(
                    control_pb2.ListTrainingJobsRequest(), timeout=5
                ).jobs
            )
            snapshot.rollouts = list(
                self._control.ListRollouts(control_pb2.ListRolloutsRequest(), timeout=5).rollouts
            )
        except grpc.RpcError as error:
            snapshot.error = f"control API: {error.code().name}"
        try:
            snapshot.agreement = live_agreement(self._http.get(self._metrics_url).text)
        except httpx.HTTPError as error:
            snapshot.error = snapshot.error or f"deployer metrics: {type(error).__name__}"
        return snapshot

    def cancel(self, job_id: str) -> None:
        """Asks the trainer to cancel a job (the demo's budget is running out)."""
        # A job that ended meanwhile has nothing left to cancel.
        with contextlib.suppress(grpc.RpcError):
            self._control.CancelTrainingJob(
                control_pb2.CancelTrainingJobRequest(job_id=job_id), timeout=10
            )

    def close(self) -> None:
        self._channel.close()
        self._http.close()


def live_agreement(metrics_text: str) -> dict[str, float]:
    """Task -> live agreement of its rollout's current stage (`interns_agreement`)."""
    found = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "interns_agreement":
            for sample in family.samples:
                found[sample.labels.get("task", "")] = sample.value
    return found


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


@dataclass
class DemoState:
    """Where the demo stands, for the views (`savings`: `figures.agreement` and
    `figures.costs` of the calls so far)."""

    elapsed_s: float
    phase: str
    rate: float
    records: list[CallRecord]
    replay_elapsed_s: float
    savings: dict[str, Any]


def recent(records: list[CallRecord], now_s: float, window_s: float = RECENT_S) -> list[CallRecord]:
    return [r for r in records if r.t_s >= now_s - window_s]


class LiveView:
    """A rich Live layout, redrawn at every `update`."""

    def __init__(self, plan: DemoPlan, console: Console):
        self._plan = plan
        self._console = console
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            auto_refresh=False,
        )
        self._job_bars: dict[str, Any] = {}

    def render(self, state: DemoState, snapshot: Snapshot) -> Group:
        plan = self._plan
        header = (
            f"[bold]Interns flywheel demo[/]  {_clock(state.elapsed_s)} of at most"
            f" {_clock(plan.budget_s)}   phase [cyan]{state.phase}[/] ({state.rate:g} calls/s)"
            f"   {len(state.records)} calls sent"
        )
        traffic = Table("route", "last 30 s", "whole replay", title="traffic", title_justify="left")
        now = recent(state.records, state.replay_elapsed_s)
        shares_now, shares_all = route_shares(now), route_shares(state.records)
        for route in ROUTES:
            traffic.add_row(route, f"{shares_now[route]:.1%}", f"{shares_all[route]:.1%}")
        tasks = Table(
            "task",
            "size",
            "share",
            "label",
            title=f"tasks found: {len(snapshot.tasks)}",
            title_justify="left",
        )
        for task in sorted(snapshot.tasks, key=lambda t: -t.size)[:5]:
            tasks.add_row(
                task.task_id, str(task.size), f"{task.traffic_share:.1%}", task.label[:40]
            )
        self._update_bars(snapshot.jobs)
        rollouts = Table(
            "task",
            "version",
            "mode",
            "share",
            "live agreement",
            "why",
            title="rollouts",
            title_justify="left",
        )
        for rollout in snapshot.rollouts:
            share = {"full": 1.0, "canary": rollout.canary_share}.get(rollout.mode, 0.0)
            live = snapshot.agreement.get(rollout.task_id)
            rollouts.add_row(
                rollout.task_id,
                f"v{rollout.model_version}" if rollout.model_version else "-",
                rollout.mode,
                f"{share:.0%}",
                f"{live:.2f}" if live is not None else "-",
                rollout.reason[:60],
            )
        savings = state.savings
        figures = (
            f"intern-served calls {savings.get('intern_calls', 0)}, agreement with the expert"
            f" {_percent(savings.get('intern_agreement'))}"
            f"   cost per call {_usd(savings.get('cost_per_call_usd_with_interns'))}"
            f" (expert only {_usd(savings.get('cost_per_call_usd_without_interns'))})"
            f"   latency p50 {_ms(savings.get('latency_ms_p50_with_interns'))}"
            f" (expert only {_ms(savings.get('latency_ms_p50_without_interns'))})"
        )
        parts: list[Any] = [header, traffic, tasks, Panel(self._bars, title="training jobs")]
        parts += [rollouts, figures]
        if snapshot.error:
            parts.append(f"[yellow]{snapshot.error}[/]")
        return Group(*parts)

    def _update_bars(self, jobs: list[Any]) -> None:
        for job in sorted(jobs, key=lambda j: j.created):
            bar = self._job_bars.get(job.job_id)
            if bar is None:
                bar = self._bars.add_task(
                    f"{job.task_id} ({job.base_model})", total=None, status="", loss="-", eta="-"
                )
                self._job_bars[job.job_id] = bar
            self._bars.update(
                bar,
                total=job.total_steps or None,
                completed=job.step,
                status=job.status,
                loss=f"{job.loss:.3f}" if job.loss else "-",
                eta=_clock(job.eta_seconds) if job.status == "running" and job.eta_seconds else "-",
            )


def plain_line(state: DemoState, snapshot: Snapshot) -> str:
    """One progress line for logs: time, phase, traffic, tasks, jobs, rollouts."""
    shares = route_shares(recent(state.records, state.replay_elapsed_s))
    # Running jobs by name; queued ones counted (a demo queues a job for every task the
    # policy accepts: twenty names a line hid the one that runs).
    jobs = [
        f"{j.task_id} {j.status} {j.step}/{j.total_steps}"
        + (f" loss {j.loss:.2f}" if j.loss else "")
        for j in snapshot.jobs
        if j.status == "running"
    ]
    queued = sum(j.status == "queued" for j in snapshot.jobs)
    if queued:
        jobs.append(f"{queued} queued")
    done = sum(j.status == "succeeded" for j in snapshot.jobs)
    rollouts = [
        f"{r.task_id} {r.mode}"
        + (f" {r.canary_share:.0%}" if r.mode == "canary" else "")
        + (
            f" agreement {snapshot.agreement[r.task_id]:.2f}"
            if r.task_id in snapshot.agreement
            else ""
        )
        for r in snapshot.rollouts
        if r.mode != "off"
    ]
    return (
        f"[{_clock(state.elapsed_s)}] {state.phase} {len(state.records)} calls;"
        f" last {RECENT_S:.0f} s: intern {shares['intern']:.0%} deferred {shares['deferred']:.0%}"
        f" fallback {shares['fallback']:.0%} expert {shares['expert']:.0%};"
        f" tasks {len(snapshot.tasks)}; jobs done {done}"
        + (f", active: {'; '.join(jobs)}" if jobs else "")
        + (f"; rollouts: {'; '.join(rollouts)}" if rollouts else "")
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.5f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
