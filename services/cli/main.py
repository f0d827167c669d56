"""The `interns` command: the local stack, the demo, the database and the contracts."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from interns.cli.jobs import jobs_app, train
from interns.cli.output import console, errors
from interns.cli.output import control_api as _control_api
from interns.cli.output import fail as _fail
from interns.cli.output import when as _when
from interns.cli.rollouts import models_app, rollouts_app
from interns.common.logging import configure_logging
from interns.common.settings import load_settings
from interns.stack.components import MissingPart
from interns.stack.settings import StackSettings

app = typer.Typer(
    no_args_is_help=True, help="Interns: small models that take over an agent's routine LLM calls."
)
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
probe_app = typer.Typer(no_args_is_help=True, help="Health probes (exit 0 when healthy).")
keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys of tenants, through the control API (TRAINER_ADDR, default: the local stack).",
)
traces_app = typer.Typer(
    no_args_is_help=True,
    help="Curation, retention and deletion of the stored traces (DATABASE_URL). An operator"
    " tool: it writes the trace tables as the trace-collector does.",
)
app.add_typer(db_app, name="db")
app.add_typer(probe_app, name="probe")
app.add_typer(keys_app, name="keys")
tasks_app = typer.Typer(
    help="Tasks the miner found in the traces, through the control API (TRAINER_ADDR).",
)
app.add_typer(traces_app, name="traces")
app.add_typer(tasks_app, name="tasks")
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.add_typer(rollouts_app, name="rollouts")
app.command("train")(train)

StateDir = Annotated[
    Path | None, typer.Option(help="State folder (logs, pids, database); INTERNS_STATE_DIR")
]


@app.callback()
def _configure() -> None:
    configure_logging("cli", "WARNING", "console")


def _settings(state_dir: Path | None) -> StackSettings:
    settings = load_settings(StackSettings)
    if state_dir is not None:
        settings.state_dir = state_dir
    return settings


@app.command()
def up(state_dir: StateDir = None) -> None:
    """Start the local stack (broker, Triton, Redis, database, every service) and wait
    until each part is healthy."""
    from interns.stack.supervisor import StackError
    from interns.stack.supervisor import up as stack_up

    settings = _settings(state_dir)
    started = time.monotonic()
    try:
        with console.status("starting the local stack") as spinner:
            stack_up(settings, lambda line: (console.print(f"  {line}"), spinner.update(line)))
    except (StackError, MissingPart) as error:
        raise _fail(str(error)) from None
    console.print(
        f"[green]stack healthy[/] in {time.monotonic() - started:.1f}s;"
        f" logs in {settings.state_dir / 'logs'}"
    )
    _print_status(settings)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop exactly what `interns up` started."""
    from interns.stack.supervisor import down as stack_down

    outcomes = stack_down(_settings(state_dir))
    if not outcomes:
        console.print("nothing to stop")
    for name, outcome in outcomes:
        console.print(f"  {name}: {outcome}")


def _print_status(settings: StackSettings) -> bool:
    from interns.stack.supervisor import status as stack_status

    rows = stack_status(settings)
    if not rows:
        console.print("the stack is not running (start it with 'interns up')")
        return False
    table = Table("part", "health", "address", "pid", "log")
    for row in rows:
        health = f"[green]healthy[/] {row.detail}" if row.healthy else f"[red]down[/] {row.detail}"
        table.add_row(row.name, health, row.address, str(row.pid or "-"), Path(row.log).name)
    console.print(table)
    console.print(f"logs in {settings.state_dir / 'logs'}")
    if settings.api_key_file.exists():
        console.print(f"API key of tenant 'local' in {settings.api_key_file}")
    return all(row.healthy for row in rows)


@app.command()
def status(state_dir: StateDir = None) -> None:
    """Show each part's health, address and pid (exit 1 when a part is down)."""
    if not _print_status(_settings(state_dir)):
        raise typer.Exit(code=1)


@app.command()
def demo(
    workload: Annotated[
        Path | None,
        typer.Option(
            help="Workload file: SGD (the default), BFCL, or OpenAI-format logs (one"
            " {request, response, metadata} object a line)"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder of the report (and of the demo's stack)")] = (
        Path("demo-out")
    ),
    minutes: Annotated[
        float, typer.Option(min=3, help="Time budget, stack start and stop included")
    ] = 30.0,
    limit: Annotated[
        int, typer.Option(min=0, help="Send at most this many calls (0: the plan's)")
    ] = 0,
    interns: Annotated[
        int, typer.Option(min=1, help="Interns the training budget is planned for")
    ] = 2,
    rate: Annotated[float, typer.Option(min=0.1, help="Calls a second after discovery")] = 10.0,
    prices: Annotated[
        Path | None, typer.Option(help="Price table, JSON or YAML (see interns.demo.prices)")
    ] = None,
    keep_running: Annotated[bool, typer.Option(help="Leave the stack up afterwards")] = False,
    live: Annotated[
        bool | None, typer.Option(help="Live view (default: when stdout is a terminal)")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """The flywheel: start the stack (deploy controller on), replay a workload through the
    gateway while Interns mines tasks, trains, evaluates and rolls out interns by itself;
    write report.json and report.html."""
    from interns.cli.demo import MissingApiKey, run_demo
    from interns.stack.supervisor import StackError

    settings = _settings(state_dir)
    if state_dir is None:
        settings.state_dir = out / "state"
    try:
        report = run_demo(
            settings,
            workload,
            out,
            console,
            limit=limit,
            minutes=minutes,
            interns=interns,
            serve_rate=rate,
            prices_file=prices,
            keep_running=keep_running,
            own_state=state_dir is None,
            live=live,
        )
    except (StackError, MissingPart, MissingApiKey, ValueError) as error:
        raise _fail(str(error)) from None
    if not report["ok"]:
        raise typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Run every migration against DATABASE_URL."""
    from interns.common.db import redact_url
    from interns.stack.supervisor import StackError, migrate_database

    url = load_settings(StackSettings).resolved_database_url
    try:
        migrate_database(url)
    except StackError as error:
        raise _fail(str(error)) from None
    console.print(f"database {redact_url(url)} is at the latest schema")


def _keys_table(keys) -> Table:
    # Ids and prefixes are copied by hand: never cut or wrapped.
    table = Table(
        Column("key id", no_wrap=True, min_width=20),
        "tenant",
        "name",
        Column("prefix", no_wrap=True, min_width=15),
        "created",
        "revoked",
        "created by",
    )
    for key in keys:
        revoked = f"[red]{_when(key.revoked)}[/]" if key.revoked else "[green]valid[/]"
        table.add_row(
            key.key_id,
            key.tenant_id,
            key.name,
            f"{key.prefix}...",
            _when(key.created),
            revoked,
            key.created_by,
        )
    return table


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant whose calls the key authenticates")],
    name: Annotated[str, typer.Option(help="A name to tell the key apart")] = "",
) -> None:
    """Create an API key for a tenant; the key is printed this once only."""
    from interns.api.v1 import control_pb2

    if not tenant.strip():
        raise _fail("--tenant: must not be empty")
    with _control_api() as control:
        created = control.CreateApiKey(
            control_pb2.CreateApiKeyRequest(tenant_id=tenant, name=name), timeout=10
        )
    console.print(_keys_table([created.api_key]))
    console.print("the key (store it now: it is not shown again; send it as")
    console.print("'authorization: Bearer <key>'):")
    print(created.key)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str, typer.Option(help="Only this tenant's keys")] = "",
) -> None:
    """List API keys (revoked ones too), never the keys themselves."""
    from interns.api.v1 import control_pb2

    with _control_api() as control:
        listed = control.ListApiKeys(control_pb2.ListApiKeysRequest(tenant_id=tenant), timeout=10)
    if not listed.api_keys:
        console.print("no API keys" + (f" of tenant {tenant!r}" if tenant else ""))
        return
    console.print(_keys_table(listed.api_keys))


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as 'interns keys list' shows")],
) -> None:
    """Revoke an API key: gateways refuse it within seconds."""
    from interns.api.v1 import control_pb2

    if not key_id.strip():
        raise _fail("KEY_ID: must not be empty")
    with _control_api() as control:
        revoked = control.RevokeApiKey(control_pb2.RevokeApiKeyRequest(key_id=key_id), timeout=10)
    console.print(_keys_table([revoked.api_key]))
    console.print(f"key {revoked.api_key.key_id} is revoked")


def _tasks_table(tasks) -> Table:
    table = Table(
        Column("task id", no_wrap=True, min_width=17),
        Column("size", justify="right"),
        Column("share", justify="right"),
        "output",
        Column("replaceability", justify="right"),
        "label",
        "first seen",
    )
    for task in tasks:
        table.add_row(
            task.task_id,
            str(task.size),
            f"{task.traffic_share:.1%}",
            task.output_kind,
            f"{task.replaceability:.2f}",
            task.label,
            _when(task.first_seen),
        )
    return table


@tasks_app.callback(invoke_without_command=True)
def tasks_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=0, help="At most this many tasks (0: 100)")] = 0,
) -> None:
    """List the mined tasks, the biggest first."""
    if ctx.invoked_subcommand is not None:
        return
    from interns.api.v1 import control_pb2

    with _control_api() as control:
        listed = control.ListTasks(control_pb2.ListTasksRequest(limit=limit), timeout=10)
    if not listed.tasks:
        console.print("no tasks mined yet")
        return
    console.print(_tasks_table(listed.tasks))


@tasks_app.command("show")
def tasks_show(
    task_id: Annotated[str, typer.Argument(help="The task's id, as 'interns tasks' shows")],
) -> None:
    """Show one task."""
    from interns.api.v1 import control_pb2

    if not task_id.strip():
        raise _fail("TASK_ID: must not be empty")
    with _control_api() as control:
        got = control.GetTask(control_pb2.GetTaskRequest(task_id=task_id), timeout=10)
    console.print(_tasks_table([got.task]))


@app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            help="OpenAI-format log (one {request, response, metadata} object a line),"
            " SGD or BFCL file"
        ),
    ],
    tenant: Annotated[str, typer.Option(help="The tenant the traces belong to")] = "local",
) -> None:
    """Load existing LLM-call logs into the trace topic (KAFKA_BOOTSTRAP_SERVERS, default:
    the local stack's broker), for the trace-collector to store. Bad lines are reported
    and skipped; importing a file again stores nothing twice."""
    import asyncio

    from rich.progress import MofNCompleteColumn, Progress

    from interns.cli.importer import (
        ImportFailed,
        failed_report,
        publish_file,
        read_traces,
        skipped_report,
        summary,
    )

    if not tenant.strip():
        raise _fail("--tenant: must not be empty")
    servers = load_settings(StackSettings).resolved_kafka_bootstrap_servers
    try:
        with console.status(f"reading {file}"):
            batch = read_traces(file, tenant)
        for line in skipped_report(batch):
            errors.print(line, highlight=False)
        if not batch.traces:
            raise ImportFailed(f"{file}: no record to import")
        with Progress(
            *Progress.get_default_columns(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task(f"publishing to {servers}", total=len(batch.traces))
            outcome = asyncio.run(
                publish_file(batch, servers, lambda count: bar.advance(task, count))
            )
    except ImportFailed as error:
        raise _fail(str(error)) from None
    for line in failed_report(batch, outcome):
        errors.print(line, highlight=False)
    console.print(summary(batch, outcome), highlight=False)
    if not outcome.published:
        raise _fail("nothing was imported")


@contextmanager
def _trace_database() -> Iterator:
    """An engine on DATABASE_URL; a database without the curation columns ends the command
    with the way to add them."""
    from sqlalchemy.exc import SQLAlchemyError

    from interns.common.db import make_engine, redact_url, schema_revisions

    url = load_settings(StackSettings).resolved_database_url
    engine = make_engine(url)
    try:
        current, head = schema_revisions(engine)
        if current != head:
            raise _fail(
                f"database {redact_url(url)} is at schema {current or 'none'}, this command"
                f" needs {head}: run 'interns db upgrade'"
            )
        yield engine
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise _fail(
            f"database {redact_url(url)}: {reason} (is it at the latest schema? run"
            " 'interns db upgrade')"
        ) from None
    finally:
        engine.dispose()


def _deletion_summary(report) -> str:
    parts = [f"{report.traces} traces deleted"]
    if report.duplicates_reset:
        parts.append(f"{report.duplicates_reset} duplicates of them to curate again")
    if report.tasks_adjusted:
        parts.append(f"{report.tasks_adjusted} tasks' sizes reduced")
    parts += [f"{count} rows of {table}" for table, count in report.derived.items()]
    return ", ".join(parts)


@traces_app.command("curate")
def traces_curate() -> None:
    """Mark duplicates, near duplicates, failed and flagged calls; the rest is
    training-eligible."""
    from interns.trace_collector.curation import NEAR_DUPLICATE_THRESHOLD, STATUSES, curate

    began = time.monotonic()
    with _trace_database() as engine, console.status("curating traces"):
        report = curate(engine)
    table = Table("curation status", Column("traces", justify="right"))
    for status in STATUSES:
        table.add_row(status, str(report.counts[status]))
    console.print(table)
    console.print(
        f"{report.tenants} tenants, {report.changed} traces changed, in"
        f" {time.monotonic() - began:.1f}s (near duplicates: similarity"
        f" >= {NEAR_DUPLICATE_THRESHOLD})"
    )


@traces_app.command("delete")
def traces_delete(
    tenant: Annotated[str, typer.Option(help="The tenant whose data is deleted")],
    session: Annotated[str | None, typer.Option(help="Only this session of the tenant")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete a tenant's traces, or one session's, and the data derived from them."""
    from interns.trace_collector.curation import delete_tenant_data

    if not tenant.strip():
        raise _fail("--tenant: must not be empty")
    what = (
        f"session {session!r} of tenant {tenant!r}" if session is not None else f"tenant {tenant!r}"
    )
    if not yes:
        typer.confirm(f"delete every trace of {what}?", abort=True)
    with _trace_database() as engine:
        report = delete_tenant_data(engine, tenant, session)
    console.print(f"{what}: {_deletion_summary(report)}")


@traces_app.command("retain")
def traces_retain(
    days: Annotated[float, typer.Option(min=0, help="Keep the calls of the last DAYS days")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete the traces of calls older than DAYS days, and the data derived from them."""
    from interns.trace_collector.curation import delete_older_than

    if not yes:
        typer.confirm(f"delete every trace older than {days:g} days?", abort=True)
    with _trace_database() as engine:
        report = delete_older_than(engine, days)
    console.print(f"older than {days:g} days: {_deletion_summary(report)}")


@app.command()
def asyncapi(
    out: Annotated[Path, typer.Option(help="Where to write the document")] = Path(
        "docs/asyncapi.yaml"
    ),
    check: Annotated[bool, typer.Option(help="Fail if the file is not up to date")] = False,
) -> None:
    """Write the AsyncAPI document of every Kafka event."""
    from importlib.metadata import version

    from interns.common.asyncapi import asyncapi_yaml

    document = asyncapi_yaml(version("interns"))
    if check:
        if not out.exists() or out.read_text() != document:
            raise _fail(f"{out} is stale: run 'make asyncapi'")
        console.print(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document)
    console.print(f"wrote {out}")


@probe_app.command("grpc")
def probe_grpc(address: str, service: str = "") -> None:
    """Check a gRPC server's standard health service."""
    from interns.stack.probes import probe_grpc as check

    healthy, detail = check(address, service=service)
    console.print(detail)
    if not healthy:
        raise typer.Exit(code=1)


@probe_app.command("http")
def probe_http(url: str) -> None:
    """Check that an HTTP endpoint answers 200."""
    from interns.stack.probes import probe_http as check

    healthy, detail = check(url)
    console.print(detail)
    if not healthy:
        raise typer.Exit(code=1)


def main() -> None:
    app(prog_name="interns")


if __name__ == "__main__":
    sys.exit(main())
