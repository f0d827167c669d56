"""Changing a task's route: the one place that writes `rollouts` (current state) and
`route_changes` (the audit trail) in one transaction, then publishes `RolloutChanged`,
which the routers apply live. The control plane (operators) and the deploy controller
(automatic rollouts) both change routes through `RouteChanger`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common.db import ModelVersion, Rollout, RouteChange, Task
from interns.common.events import RolloutChanged

Publish = Callable[[RolloutChanged], Awaitable[None]]
MODES = ("shadow", "canary", "full")


class RouteError(Exception):
    """A route change that cannot be carried out; `kind` is invalid, not_found or conflict."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class RouteChanger:
    def __init__(self, engine: Engine, publish: Publish):
        self._engine = engine
        self._publish = publish

    def current(self, task_id: str) -> Rollout | None:
        with Session(self._engine) as session:
            return session.get(Rollout, task_id)

    def history(self, task_id: str, limit: int = 20) -> list[RouteChange]:
        """The task's latest route changes, the newest first."""
        with Session(self._engine) as session:
            query = (
                select(RouteChange)
                .where(RouteChange.task_id == task_id)
                .order_by(col(RouteChange.id).desc())
                .limit(limit)
            )
            return list(session.exec(query))

    async def promote(
        self, task_id: str, model: str, version: int, mode: str, share: float, by: str, reason: str
    ) -> Rollout:
        """Routes the task to `model` `version` in `mode` (a canary at `share`)."""
        if mode not in MODES:
            raise RouteError("invalid", f"mode: must be one of {', '.join(MODES)}")
        if mode == "canary" and not 0 < share <= 1:
            raise RouteError("invalid", "canary_share: must be above 0 and at most 1")
        with Session(self._engine) as session:
            if session.get(ModelVersion, (model, version)) is None:
                raise RouteError("not_found", f"no model {model!r} version {version}")
            current = session.get(Rollout, task_id)
        if current is not None and current.pinned:
            raise RouteError("conflict", f"task {task_id!r} is pinned to the expert; unpin it")
        return await self.change(
            task_id,
            target=model,
            version=version,
            mode=mode,
            share=share if mode == "canary" else 0.0,
            pinned=False,
            by=by,
            reason=reason,
        )

    async def rollback(self, task_id: str, by: str, reason: str) -> Rollout:
        """Returns the task to the route it had before its last change (the expert if none)."""
        history = self.history(task_id, limit=2)
        if not history:
            raise RouteError("not_found", f"task {task_id!r} has no route to roll back")
        previous = (
            history[1]
            if len(history) == 2
            else RouteChange(task_id=task_id, target="expert", model_version=0, mode="off")
        )
        return await self.change(
            task_id,
            target=previous.target,
            version=previous.model_version,
            mode=previous.mode,
            share=previous.canary_share,
            pinned=previous.pinned,
            by=by,
            reason=reason,
        )

    async def pin(self, task_id: str, pinned: bool, by: str, reason: str) -> Rollout:
        return await self.change(
            task_id,
            target="expert",
            version=0,
            mode="off",
            share=0.0,
            pinned=pinned,
            by=by,
            reason=reason,
        )

    async def change(
        self,
        task_id: str,
        *,
        target: str,
        version: int,
        mode: str,
        share: float,
        pinned: bool,
        by: str,
        reason: str,
    ) -> Rollout:
        """Writes the route and its audit row in one transaction, then publishes it."""
        now = datetime.now(UTC)
        with Session(self._engine) as session:
            rollout = session.get(Rollout, task_id) or Rollout(task_id=task_id)
            task = session.get(Task, task_id)
            rollout.signature = task.signature if task else rollout.signature
            rollout.target, rollout.model_version, rollout.mode = target, version, mode
            rollout.canary_share, rollout.pinned = share, pinned
            rollout.changed_by, rollout.reason, rollout.updated_at = by, reason, now
            session.add(rollout)
            session.add(
                RouteChange(
                    task_id=task_id,
                    target=target,
                    model_version=version,
                    mode=mode,
                    canary_share=share,
                    pinned=pinned,
                    changed_by=by,
                    reason=reason,
                    changed_at=now,
                )
            )
            session.commit()
            session.refresh(rollout)
        await self._publish(
            RolloutChanged(
                task_id=task_id,
                signature=rollout.signature,
                target=target,
                model_version=version,
                mode=mode,
                canary_share=share,
                pinned=pinned,
                changed_by=by,
                reason=reason,
                occurred_at=now,
            )
        )
        return rollout
