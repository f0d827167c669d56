"""`interns jobs ...` and `interns train`: training jobs through the control API
(TRAINER_ADDR). `watch` draws a job's progress (step, loss, ETA) until it ends."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from interns.cli.output import console
from interns.cli.output import control_api as _control
from interns.cli.output import fail as _fail

jobs_app = typer.Typer(
    help="Training jobs, through the control API (TRAINER_ADDR, default: the local stack).",
)
ENDED = ("succeeded", "failed", "cancelled")
STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}

JobId = Annotated[str, typer.Argument(help="The job's id, as 'interns jobs' shows")]


def _eta(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if seconds else "-"


def _status(job) -> str:
    style = STATUS_STYLE.get(job.status, "white")
    cancelling = " (cancelling)" if job.cancel_requested and job.status == "running" else ""
    return f"[{style}]{job.status}[/]{cancelling}"


def _jobs_table(jobs) -> Table:
    table = Table(
        Column("job id", no_wrap=True, min_width=32),
        "task",
        "base model",
        "status",
        Column("step", justify="right"),
        Column("loss", justify="right"),
        Column("ETA", justify="right"),
        "model",
        Column("attempts", justify="right"),
    )
    for job in jobs:
        table.add_row(
            job.job_id,
            job.task_id,
            f"{job.base_model} ({job.device})",
            _status(job),
            f"{job.step}/{job.total_steps}" if job.total_steps else "-",
            f"{job.loss:.3f}" if job.loss else "-",
            _eta(job.eta_seconds) if job.status == "running" else "-",
            f"{job.model} v{job.model_version}" if job.model_version else "-",
            str(job.attempts),
        )
    return table


def _get(control, job_id: str):
    from interns.api.v1 import control_pb2

    return control.GetTrainingJob(control_pb2.GetTrainingJobRequest(job_id=job_id), timeout=10).job


def _verdict(control, job) -> str:
    """The job's model version: registered (exported) or rejected, with its scores."""
    from interns.api.v1 import control_pb2

    if not job.model_version:
        return ""
    listed = control.ListModels(control_pb2.ListModelsRequest(task_id=job.task_id), timeout=10)
    for model in listed.models:
        if (model.model, model.version) == (job.model, job.model_version):
            scores = ", ".join(f"{k} {v:.3g}" for k, v in sorted(model.scores.items()))
            return f"{model.model} v{model.version}: {model.status} ({scores})"
    return f"{job.model} v{job.model_version}"


@jobs_app.callback(invoke_without_command=True)
def jobs_list(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="Only this task's jobs")] = "",
) -> None:
    """List the training jobs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from interns.api.v1 import control_pb2

    with _control() as control:
        listed = control.ListTrainingJobs(
            control_pb2.ListTrainingJobsRequest(task_id=task), timeout=10
        )
    if not listed.jobs:
        console.print("no training jobs" + (f" for task {task!r}" if task else ""))
        return
    console.print(_jobs_table(listed.jobs))


@jobs_app.command("show")
def jobs_show(job_id: JobId) -> None:
    """Show one job: its progress, why its base model was chosen, and its model version."""
    if not job_id.strip():
        raise _fail("JOB_ID: must not be empty")
    with _control() as control:
        job = _get(control, job_id)
        verdict = _verdict(control, job)
    console.print(_jobs_table([job]))
    console.print("base model selection:")
    for reason in job.selection:
        console.print(f"  - {reason}", highlight=False)
    if job.resumed_at_step:
        console.print(f"resumed from a checkpoint at step {job.resumed_at_step}")
    if verdict:
        console.print(f"model: {verdict}", highlight=False)
    if job.error:
        console.print(f"[red]error:[/] {job.error}", highlight=False)


def watch_job(job_id: str, interval_s: float = 1.0) -> str:
    """Draws the job's progress until it ends; returns its final status."""
    progress = Progress(
        TextColumn("{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=console,
    )
    with _control() as control, progress:
        bar = progress.add_task(job_id, total=None, status="queued", loss="-", eta="-")
        while True:
            job = _get(control, job_id)
            progress.update(
                bar,
                total=job.total_steps or None,
                completed=job.step,
                status=_status(job),
                loss=f"{job.loss:.3f}" if job.loss else "-",
                eta=_eta(job.eta_seconds) if job.status == "running" else "-",
            )
            if job.status in ENDED:
                break
            time.sleep(interval_s)
        verdict = _verdict(control, job)
    if verdict:
        console.print(f"model: {verdict}", highlight=False)
    if job.error:
        console.print(f"[red]error:[/] {job.error}", highlight=False)
    return job.status


@jobs_app.command("watch")
def jobs_watch(
    job_id: JobId,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between updates")] = 1.0,
) -> None:
    """Follow a job with a progress bar (step/total, loss, ETA) until it ends; exit 1
    unless it succeeded. Ctrl-C stops watching, not the job."""
    if not job_id.strip():
        raise _fail("JOB_ID: must not be empty")
    if watch_job(job_id, interval) != "succeeded":
        raise typer.Exit(code=1)


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobId) -> None:
    """Cancel a job: a queued one at once, a running one at its next training step."""
    from interns.api.v1 import control_pb2

    if not job_id.strip():
        raise _fail("JOB_ID: must not be empty")
    with _control() as control:
        job = control.CancelTrainingJob(
            control_pb2.CancelTrainingJobRequest(job_id=job_id), timeout=10
        ).job
    console.print(_jobs_table([job]))
    if job.status == "cancelled":
        console.print(f"job {job.job_id} is cancelled")
    else:
        console.print(f"job {job.job_id} stops at its next step ('interns jobs watch' follows it)")


def train(
    task_id: Annotated[str, typer.Argument(help="The task's id, as 'interns tasks' shows")],
    base: Annotated[
        str, typer.Option(help="A base model of the catalog (default: the trainer chooses)")
    ] = "",
    watch: Annotated[bool, typer.Option(help="Follow the job until it ends")] = False,
) -> None:
    """Start training an intern for a task now (the training policy is not asked)."""
    from interns.api.v1 import control_pb2

    if not task_id.strip():
        raise _fail("TASK_ID: must not be empty")
    with _control() as control:
        job = control.StartTrainingJob(
            control_pb2.StartTrainingJobRequest(task_id=task_id, base_model=base), timeout=30
        ).job
    console.print(_jobs_table([job]))
    for reason in job.selection[:1]:
        console.print(f"base model: {reason}", highlight=False)
    if watch and watch_job(job.job_id) != "succeeded":
        raise typer.Exit(code=1)
