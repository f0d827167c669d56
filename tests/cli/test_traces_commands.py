"""`interns traces curate | delete | retain` on the database at DATABASE_URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from interns.cli.main import app
from interns.common.db import Trace, make_engine, upgrade_database
from interns.common.events import TraceRecorded, TraceRequest, TraceResponse
from interns.trace_collector.store import write_traces


def trace(trace_id: str, ask: str, tenant: str = "acme", session: str = "s1", days_ago=0):
    return TraceRecorded(
        trace_id=trace_id,
        tenant_id=tenant,
        session_id=session,
        occurred_at=datetime.now(UTC) - timedelta(days=days_ago),
        request=TraceRequest(messages=[{"role": "user", "content": ask}]),
        response=TraceResponse(message={"role": "assistant", "content": "Done."}),
    )


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    write_traces(
        engine,
        [
            trace("a", "Book Paris for two.", days_ago=3),
            trace("b", "Book Paris for two.", days_ago=2),
            trace("c", "Book Lima for two.", session="s2", days_ago=40),
            trace("d", "Book Oslo for two.", tenant="globex"),
        ],
    )
    engine.dispose()
    return url


def run(url: str, *args: str, stdin: str | None = None):
    env = {"DATABASE_URL": url, "COLUMNS": "200"}
    return CliRunner().invoke(app, ["traces", *args], env=env, input=stdin)


def stored(url: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as connection:
        ids = set(connection.execute(select(Trace.trace_id)).scalars())
    engine.dispose()
    return ids


def test_curate_shows_the_count_per_status(database):
    result = run(database, "curate")
    assert result.exit_code == 0, result.output
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") == 3
    }
    assert (lines["eligible"], lines["duplicate"], lines["failed"]) == ("3", "1", "0")
    assert "2 tenants, 4 traces changed" in result.output


def test_deleting_a_session_asks_first_and_removes_only_it(database):
    refused = run(database, "delete", "--tenant", "acme", "--session", "s1", stdin="n\n")
    assert refused.exit_code == 1 and stored(database) == {"a", "b", "c", "d"}
    result = run(database, "delete", "--tenant", "acme", "--session", "s1", "--yes")
    assert result.exit_code == 0, result.output
    assert "session 's1' of tenant 'acme': 2 traces deleted" in result.output
    assert stored(database) == {"c", "d"}


def test_deleting_a_tenant_removes_all_of_its_sessions(database):
    result = run(database, "delete", "--tenant", "acme", "--yes")
    assert "tenant 'acme': 3 traces deleted" in result.output
    assert stored(database) == {"d"}


def test_retention_deletes_the_old_calls_only(database):
    result = run(database, "retain", "--days", "30", "--yes")
    assert result.exit_code == 0, result.output
    assert "older than 30 days: 1 traces deleted" in result.output
    assert stored(database) == {"a", "b", "d"}


def test_a_database_without_the_curation_columns_says_how_to_add_them(tmp_path):
    from alembic import command
    from alembic.config import Config

    from interns.common.db import MIGRATIONS_DIR

    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, "0002")
    result = run(url, "curate")
    assert result.exit_code == 1
    assert "run 'interns db upgrade'" in result.output
