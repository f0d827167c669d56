"""`interns models` and `interns rollouts ...`: model versions and routes through the
control API (TRAINER_ADDR); promote, roll back, pin to the expert. Every change is
recorded with who made it and why; `interns rollouts history` reads that audit trail
(route_changes, DATABASE_URL), the deploy controller's changes among the operators'."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from interns.cli.output import console
from interns.cli.output import control_api as _control
from interns.cli.output import fail as _fail
from interns.cli.output import when as _when

models_app = typer.Typer(
    help="Model versions (and their rollout status), through the control API (TRAINER_ADDR)."
)
rollouts_app = typer.Typer(
    help="Routes of tasks: list, promote, roll back, pin to the expert (TRAINER_ADDR).",
)
MODES = ("shadow", "canary", "full")
STATUS_STYLE = {
    "serving": "green",
    "deploying": "cyan",
    "registered": "yellow",
    "rolled_back": "red",
    "failed": "red",
    "rejected": "red",
    "not_better": "magenta",
    "abandoned": "magenta",
    "replaced": "white",
}

TaskId = Annotated[str, typer.Argument(help="The task's id, as 'interns tasks' shows")]
Reason = Annotated[str, typer.Option(help="Why, for the audit trail")]


def _models_table(models) -> Table:
    table = Table(
        Column("model", no_wrap=True),
        Column("version", justify="right"),
        "task",
        "base model",
        "status",
        "scores",
        "registered",
    )
    for model in models:
        style = STATUS_STYLE.get(model.status, "white")
        scores = ", ".join(
            f"{name} {value:.2f}"
            for name, value in sorted(model.scores.items())
            if name in ("exact_match", "exact_match_without_dates", "json_equal", "text_similarity")
        )
        table.add_row(
            model.model,
            str(model.version),
            model.task_id,
            model.base_model,
            f"[{style}]{model.status}[/]",
            scores or "-",
            _when(model.created),
        )
    return table


def _rollouts_table(rollouts) -> Table:
    table = Table(
        Column("task", no_wrap=True),
        "route",
        "mode",
        "changed by",
        "why",
        "when",
    )
    for rollout in rollouts:
        if rollout.pinned:
            route = "[magenta]expert (pinned)[/]"
        elif rollout.target == "expert":
            route = "expert"
        else:
            route = f"{rollout.target} v{rollout.model_version}"
        mode = rollout.mode
        if mode == "canary":
            mode = f"canary {rollout.canary_share:.0%}"
        table.add_row(
            rollout.task_id, route, mode, rollout.changed_by, rollout.reason, _when(rollout.updated)
        )
    return table


@models_app.callback(invoke_without_command=True)
def models_list(
    task: Annotated[str, typer.Option(help="Only this task's models")] = "",
) -> None:
    """List model versions, the newest first, with their rollout status."""
    from interns.api.v1 import control_pb2

    with _control() as control:
        listed = control.ListModels(control_pb2.ListModelsRequest(task_id=task), timeout=10)
    if not listed.models:
        console.print("no models registered" + (f" for task {task!r}" if task else ""))
        return
    console.print(_models_table(listed.models))


@rollouts_app.callback(invoke_without_command=True)
def rollouts_list(ctx: typer.Context) -> None:
    """List each routed task's current route, who changed it last and why."""
    if ctx.invoked_subcommand is not None:
        return
    from interns.api.v1 import control_pb2

    with _control() as control:
        listed = control.ListRollouts(control_pb2.ListRolloutsRequest(), timeout=10)
    if not listed.rollouts:
        console.print("no task is routed yet: every call goes to the expert")
        return
    console.print(_rollouts_table(listed.rollouts))


@rollouts_app.command("promote")
def rollouts_promote(
    task_id: TaskId,
    model: Annotated[str, typer.Option(help="The intern's Triton model name")],
    version: Annotated[int, typer.Option(min=1, help="The model version to route to")],
    mode: Annotated[str, typer.Option(help="shadow, canary or full")] = "shadow",
    share: Annotated[float, typer.Option(help="For canary: the intern's share, (0, 1]")] = 0.0,
    reason: Reason = "",
) -> None:
    """Route a task to a model version (shadow, canary at a share, or full)."""
    from interns.api.v1 import control_pb2

    if mode not in MODES:
        raise _fail(f"--mode: must be one of {', '.join(MODES)}")
    if mode == "canary" and not 0 < share <= 1:
        raise _fail("--share: a canary needs a share above 0 and at most 1")
    with _control() as control:
        done = control.PromoteModel(
            control_pb2.PromoteModelRequest(
                task_id=task_id,
                model=model,
                model_version=version,
                mode=mode,
                canary_share=share,
                reason=reason,
            ),
            timeout=10,
        )
    console.print(_rollouts_table([done.rollout]))


@rollouts_app.command("rollback")
def rollouts_rollback(task_id: TaskId, reason: Reason = "") -> None:
    """Return a task to the route it had before its last change (the expert if none)."""
    from interns.api.v1 import control_pb2

    with _control() as control:
        done = control.RollbackTask(
            control_pb2.RollbackTaskRequest(task_id=task_id, reason=reason), timeout=10
        )
    console.print(_rollouts_table([done.rollout]))


def _pin(task_id: str, pinned: bool, reason: str) -> None:
    from interns.api.v1 import control_pb2

    with _control() as control:
        done = control.PinTaskToExpert(
            control_pb2.PinTaskToExpertRequest(task_id=task_id, pinned=pinned, reason=reason),
            timeout=10,
        )
    console.print(_rollouts_table([done.rollout]))


@rollouts_app.command("pin")
def rollouts_pin(task_id: TaskId, reason: Reason = "") -> None:
    """Pin a task to the expert: no intern serves it, and no rollout moves it, until unpinned."""
    _pin(task_id, True, reason)


@rollouts_app.command("unpin")
def rollouts_unpin(task_id: TaskId, reason: Reason = "") -> None:
    """Unpin a task (it stays on the expert until a version is promoted)."""
    _pin(task_id, False, reason)


@rollouts_app.command("history")
def rollouts_history(
    task_id: TaskId,
    limit: Annotated[int, typer.Option(min=1, help="The latest this many changes")] = 20,
) -> None:
    """The audit trail of a task's route: every change, who or what made it, and why
    (reads DATABASE_URL)."""
    from interns.cli.main import _trace_database
    from interns.common.routes import RouteChanger

    async def nowhere(_change) -> None:
        return None

    with _trace_database() as engine:
        changes = RouteChanger(engine, nowhere).history(task_id, limit)
    if not changes:
        console.print(f"task {task_id!r} has no route changes")
        return
    table = Table("when", "route", "mode", "changed by", "why")
    for change in changes:
        route = (
            "expert" if change.target == "expert" else f"{change.target} v{change.model_version}"
        )
        if change.pinned:
            route += " (pinned)"
        mode = f"canary {change.canary_share:.0%}" if change.mode == "canary" else change.mode
        table.add_row(
            change.changed_at.strftime("%Y-%m-%d %H:%M:%S"),
            route,
            mode,
            change.changed_by,
            change.reason,
        )
    console.print(table)
