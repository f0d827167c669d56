"""The migrations build the schema the code expects (SQLite here; PostgreSQL in the
integration tier)."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlmodel import SQLModel

from interns.common.db import make_engine, upgrade_database


def test_migrations_create_every_table_with_every_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'db' / 'interns.db'}"
    upgrade_database(url)
    upgrade_database(url)  # a second run is a no-op
    inspector = inspect(make_engine(url))
    for table in SQLModel.metadata.sorted_tables:
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys()), table.name
