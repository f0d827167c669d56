"""`interns demo`: the flywheel, end to end, with no human step.

It plans the time budget (printed first, with the longest it will take), starts the local
stack with the deploy controller on and the plan's settings, replays a recorded workload
through the gateway against the replay expert while the stack mines tasks, trains interns,
evaluates them and rolls them out (shadow, canary, full) by itself, shows it live, and
writes `report.json` and `report.html` into the output folder. The stack is stopped at
the end unless asked to keep running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from interns.common.db import make_engine
from interns.common.settings import load_settings
from interns.demo.live import StackWatcher
from interns.demo.loop import LoopResult, Replay, run_loop
from interns.demo.plan import machine_slowdown, make_plan, stack_environment
from interns.demo.prices import PriceTable, load_prices
from interns.demo.report import build_report, history, traces_stored, write_report
from interns.expert.replay import load_workload
from interns.expert.settings import ExpertSettings
from interns.stack.settings import StackSettings
from interns.stack.supervisor import StackError, load_state
from interns.stack.supervisor import down as stack_down
from interns.stack.supervisor import up as stack_up

TRACE_WAIT_S = 20.0


class MissingApiKey(RuntimeError):
    """The demo has no API key to send."""


def demo_api_key(settings: StackSettings) -> str:
    """INTERNS_API_KEY, else the local key `interns up` wrote in the state folder."""
    if settings.api_key:
        return settings.api_key
    try:
        return settings.api_key_file.read_text().strip()
    except FileNotFoundError:
        raise MissingApiKey(
            f"no API key in {settings.api_key_file}: start the stack with 'interns up',"
            " or set INTERNS_API_KEY"
        ) from None


def wait_for_traces(database_url: str, trace_ids: list[str], timeout_s: float) -> int:
    """How many of `trace_ids` the collector has stored, waiting up to `timeout_s`."""
    engine = make_engine(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            stored = traces_stored(engine, trace_ids)
            if stored >= len(trace_ids) or time.monotonic() > deadline:
                return stored
            time.sleep(0.5)
    finally:
        engine.dispose()


def fresh_state(settings: StackSettings, own_folder: bool) -> None:
    """A demo starts from an empty state (no tasks, models or routes of an earlier run):
    its own folder is emptied; a folder given by the operator must not run a stack."""
    if any(r.process() for r in load_state(settings)):
        raise StackError(
            f"a stack is running in {settings.state_dir}: the demo starts its own; stop it"
            " with 'interns down' first"
        )
    if own_folder:
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def _summary(report: dict[str, Any], console: Console) -> None:
    table = Table("figure", "value", title="the flywheel demo")
    rows = [
        ("calls answered / sent", f"{report['answered']} / {report['calls']}"),
        ("traces stored", str(report["traces_stored"])),
        ("tasks found", str(report["tasks_found"])),
        (
            "interns trained / passed the offline gate",
            (f"{report['interns_trained']} / {report['versions_registered']}"),
        ),
        ("promotions (canary or full)", str(len(report["promotions"]))),
        (
            "intern share at the end / overall",
            (f"{report['intern_share']:.1%} / {report['intern_share_overall']:.1%}"),
        ),
        (
            "cost per call: expert only / with interns",
            (
                f"${report['cost_per_call_usd_without_interns'] or 0:.6f} /"
                f" ${report['cost_per_call_usd_with_interns'] or 0:.6f}"
            ),
        ),
        (
            "latency p50: expert only / with interns",
            (
                f"{report['latency_ms_p50_without_interns'] or 0:.0f} ms /"
                f" {report['latency_ms_p50_with_interns'] or 0:.0f} ms"
            ),
        ),
        ("duration", f"{report['duration_s'] / 60:.1f} min"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for goal in report["goals"]:
        verdict = "[green]PASS[/]" if goal["passed"] else "[red]FAIL[/]"
        console.print(
            f"{verdict} {goal['goal']}: {goal['measured']}", highlight=False, soft_wrap=True
        )
    for error in report["errors"]:
        console.print(f"[red]error:[/] {error}", highlight=False)


def run_demo(
    settings: StackSettings,
    workload: Path | None,
    out: Path,
    console: Console,
    *,
    limit: int = 0,
    minutes: float = 30.0,
    interns: int = 2,
    serve_rate: float = 10.0,
    prices_file: Path | None = None,
    keep_running: bool = False,
    own_state: bool = True,
    live: bool | None = None,
) -> dict[str, Any]:
    """The whole demo; returns the report (`report["ok"]` is False when calls failed or
    traces were not stored). `own_state`: `settings.state_dir` is the demo's own folder,
    emptied first."""
    began = time.monotonic()
    budget_s = minutes * 60
    path = Path(workload or load_settings(ExpertSettings).workload).resolve()
    loaded = load_workload(path)
    plan = make_plan(
        str(path),
        loaded.format,
        len(loaded.records),
        budget_s=budget_s,
        serve_rate=serve_rate,
        limit=limit,
        interns=interns,
        slowdown=machine_slowdown(os.getloadavg()[0], os.cpu_count() or 1),
    )
    prices: PriceTable = load_prices(prices_file)
    for line in plan.lines():
        console.print(line, highlight=False, soft_wrap=True)
    fresh_state(settings, own_state)
    settings.deployer = True
    settings.workload = str(path)
    live = console.is_terminal if live is None else live
    with stack_environment(plan.settings), console.status("starting the local stack") as spinner:
        stack_up(settings, lambda line: spinner.update(line))
    console.print(
        f"[green]stack healthy[/] in {time.monotonic() - began:.0f} s;"
        f" logs in {settings.state_dir / 'logs'}"
    )
    replay = Replay(f"{settings.host}:{settings.gateway_port}", demo_api_key(settings))
    watcher = StackWatcher(
        settings.resolved_trainer_addr,
        f"http://{settings.host}:{settings.deployer_ops_port}/metrics",
    )
    replay_started = datetime.now(UTC)
    result = LoopResult(records=[], trace_ids=[], replay_s=0.0)
    stored, past = 0, {"tasks_found": 0, "route_changes": [], "jobs": [], "models": []}
    try:
        result = asyncio.run(
            run_loop(
                plan,
                loaded.records,
                replay,
                watcher,
                prices,
                console,
                began=began,
                deadline=began + budget_s - plan.teardown_reserve_s,
                live=live,
            )
        )
        with console.status("waiting for the last traces to reach the database"):
            stored = wait_for_traces(settings.resolved_database_url, replay.trace_ids, TRACE_WAIT_S)
    finally:
        watcher.close()
        # Read even when interrupted: the report says how far the loop got.
        engine = make_engine(settings.resolved_database_url)
        try:
            past = history(engine, replay_started)
        except SQLAlchemyError as error:
            console.print(f"[yellow]the stack's history could not be read:[/] {error}")
        finally:
            engine.dispose()
        if not keep_running:
            with console.status("stopping the stack"):
                stack_down(settings)
            console.print("stack stopped (--keep-running leaves it up)")
        else:
            console.print(f"stack left running: INTERNS_STATE_DIR={settings.state_dir}")
        report = build_report(
            plan,
            replay.records,
            past,
            prices,
            duration_s=time.monotonic() - began,
            replay_s=result.replay_s or (datetime.now(UTC) - replay_started).total_seconds(),
            extra={
                "traces_stored": stored,
                "cancelled_jobs": result.cancelled_jobs,
                "state_dir": str(settings.state_dir),
            },
        )
        report["ok"] = report["failed"] == 0 and stored == report["answered"]
        json_path, html_path = write_report(report, out)
    _summary(report, console)
    console.print(f"report written to {json_path} and {html_path}")
    return report
