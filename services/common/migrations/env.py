"""Alembic environment: the URL comes from the caller (`upgrade_database`) or DATABASE_URL."""

import os

from alembic import context
from sqlmodel import SQLModel

from interns.common import db

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    url = config.attributes.get("database_url") or os.environ.get(
        "DATABASE_URL", "sqlite:///.interns/interns.db"
    )
    engine = db.make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
