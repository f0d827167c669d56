"""Real calls to warm a new version with: the task's latest stored calls (PII redacted by
the trace-collector), as OpenAI request bodies."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common.db import Task, Trace
from interns.common.signature import request_signature

SCAN = 500


def _body(request: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in request.items() if value not in (None, [], "")}


def warmup_bodies(engine: Engine, task_id: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` stored calls of the task, the newest first: those routed as the task,
    else the latest calls with the task's signature."""
    if limit <= 0:
        return []
    with Session(engine) as session:
        latest = select(Trace.request).where(Trace.status == "ok")
        latest = latest.order_by(col(Trace.created_at).desc())
        rows = list(session.exec(latest.where(Trace.task_id == task_id).limit(limit)))
        if rows:
            return [_body(r) for r in rows]
        task = session.get(Task, task_id)
        if task is None or not task.signature:
            return []
        bodies = []
        for request in session.exec(latest.limit(SCAN)):
            body = _body(request)
            if request_signature(body) == task.signature:
                bodies.append(body)
                if len(bodies) == limit:
                    break
        return bodies
