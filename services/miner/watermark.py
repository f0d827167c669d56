"""Which traces are new since the last mining pass: mining is incremental."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from interns.common.db import Trace


def count_new_traces(engine: Engine, since: datetime | None) -> tuple[int, datetime | None]:
    """The number of traces stored after `since`, and the newest storage time seen."""
    query = select(func.count(), func.max(Trace.stored_at))
    if since is not None:
        query = query.where(Trace.stored_at > since)
    with engine.connect() as connection:
        count, newest = connection.execute(query).one()
    return count, newest or since
