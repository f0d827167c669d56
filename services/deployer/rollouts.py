"""The deploy controller's logic: a registered version becomes a rollout, step by step.

A version that passed its offline evaluation (and beats the serving version's offline
score, when there is one) is loaded into Triton beside the versions still serving, warmed
with stored calls, then routed shadow -> canary at each share -> full. Each step is judged
on live comparisons with the expert (`interns.deployer.gating`); a failed gate, a rising
fallback rate or a version that stops answering sends the task back to the route it had
before (the previous version while it is loaded, else the expert), with the reason in the
route's audit row and event. A serving version stays watched. A version the route left is
unloaded once drained (`interns.deployer.draining`).

Route changes go through `interns.common.routes` (the control plane's logic): one audit
row per change, `changed_by` "controller". A model version's `status` records its rollout:
registered -> deploying -> serving, or rolled_back, failed, not_better, abandoned; serving
-> replaced. The status makes the controller idempotent (a redelivered event is ignored)
and lets a new active replica resume (`resume`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common.db import ModelVersion, Rollout
from interns.common.events import ModelRegistered, RolloutChanged, ShadowCompared
from interns.common.logging import get_logger
from interns.common.metrics import AGREEMENT
from interns.common.routes import RouteChanger, RouteError
from interns.deployer.draining import Retiring, drained
from interns.deployer.drift import DriftPolicy, TaskHealth, should_retrain, traffic_since
from interns.deployer.gating import Stage, Tally, Window, judge, plan, watch
from interns.deployer.settings import DeployerSettings
from interns.deployer.triton import TritonError

log = get_logger(__name__)
CONTROLLER = "controller"


class Models(Protocol):
    """What the controller needs of Triton (`interns.deployer.triton.TritonModels`)."""

    async def loaded_versions(self, model: str) -> set[int]: ...

    async def serve_versions(self, model: str, versions: set[int], timeout_s: float) -> None: ...

    async def answer(
        self, model: str, version: int, body: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]: ...

    async def call_count(self, model: str, version: int) -> int: ...


@dataclass(frozen=True)
class Route:
    """A route to return to."""

    target: str = "expert"
    version: int = 0
    mode: str = "off"
    share: float = 0.0
    pinned: bool = False

    @classmethod
    def of(cls, rollout: Rollout | None) -> Route:
        if rollout is None:
            return cls()
        return cls(
            rollout.target,
            rollout.model_version,
            rollout.mode,
            rollout.canary_share,
            rollout.pinned,
        )

    @property
    def intern(self) -> bool:
        return self.target != "expert" and self.mode != "off" and not self.pinned


@dataclass
class Deployment:
    """One version's rollout, or its watch once it serves."""

    task_id: str
    model: str
    version: int
    previous: Route
    stages: list[Stage]
    step: int = 0
    started: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tally: Tally = field(default_factory=Tally)
    window: Window = field(default_factory=lambda: Window(200))
    agreement_at_full: float = 1.0

    @property
    def stage(self) -> Stage:
        return self.stages[self.step]

    @property
    def serving(self) -> bool:
        return self.stage.mode == "full"


Bodies = Callable[[str, int], list[dict[str, Any]]]
RequestTraining = Callable[[str, str], Awaitable[None]]


class Deployer:
    def __init__(
        self,
        engine: Engine,
        routes: RouteChanger,
        models: Models,
        settings: DeployerSettings,
        warmup: Bodies,
        clock: Callable[[], float] = time.monotonic,
        request_training: RequestTraining | None = None,
    ):
        self._engine = engine
        self._routes = routes
        self._models = models
        self._settings = settings
        self._warmup = warmup
        self._clock = clock
        self.deployments: dict[str, Deployment] = {}
        self.retiring: dict[tuple[str, int], Retiring] = {}
        self._starting: set[tuple[str, int]] = set()
        self._request_training = request_training
        self._drift_looked = clock()
        self._training_asked: dict[str, float] = {}

    # --- model versions ---------------------------------------------------------------

    def _status(self, model: str, version: int, status: str | None = None) -> str | None:
        """A version's status; sets it first when `status` is given."""
        with Session(self._engine) as session:
            row = session.get(ModelVersion, (model, version))
            if row is None:
                return None
            if status is not None:
                row.status = status
                session.add(row)
                session.commit()
            return row.status

    def _not_better(self, task_id: str, model: str, version: int) -> str:
        """Why the candidate does not beat the serving version offline ('' when it does,
        or when there is nothing to compare)."""
        metric = self._settings.compare_metric
        current = self._routes.current(task_id)
        if current is None or not Route.of(current).intern:
            return ""
        if (current.target, current.model_version) == (model, version):
            return ""  # its own interrupted rollout, resumed
        with Session(self._engine) as session:
            serving = session.get(ModelVersion, (current.target, current.model_version))
            candidate = session.get(ModelVersion, (model, version))
        if serving is None or candidate is None:
            return ""
        new, old = candidate.scores.get(metric), serving.scores.get(metric)
        where = "its own held-out set"
        if candidate.scores.get("baseline_version") == current.model_version:
            # The trainer scored the serving version on the candidate's held-out examples.
            old, where = candidate.scores.get(f"baseline_{metric}", old), "the same held-out set"
        if new is None or old is None or new > old:
            return ""
        return (
            f"{metric} {new:.3f} does not beat the serving v{current.model_version}'s"
            f" {old:.3f} (on {where})"
        )

    def _route_before(self, task_id: str, model: str, version: int) -> Route:
        """The task's route before `version` was routed (its current one when it never
        was): what a rollback returns to."""
        for change in self._routes.history(task_id, limit=50):
            if (change.target, change.model_version) != (model, version):
                return Route(
                    change.target,
                    change.model_version,
                    change.mode,
                    change.canary_share,
                    change.pinned,
                )
        return Route()

    async def on_registered(self, event: ModelRegistered) -> None:
        """Starts the rollout of a version that passed its offline evaluation; a version
        already handled (a redelivered event) is left alone."""
        if not event.passed:
            return
        status = self._status(event.model, event.version)
        if status != "registered":
            if status is None:
                log.warning("unknown model version", model=event.model, version=event.version)
            return
        await self._deploy(event.task_id, event.model, event.version)

    async def _deploy(self, task_id: str, model: str, version: int) -> None:
        if (model, version) in self._starting:
            return
        self._starting.add((model, version))
        try:
            await self._start(task_id, model, version)
        finally:
            self._starting.discard((model, version))

    async def _start(self, task_id: str, model: str, version: int) -> None:
        why_not = self._not_better(task_id, model, version)
        if why_not:
            self._status(model, version, "not_better")
            log.info("version not rolled out", model=model, version=version, reason=why_not)
            return
        running = self.deployments.get(task_id)
        if running is not None and not running.serving:
            previous = running.previous
            self._status(running.model, running.version, "abandoned")
            self._retire(running.model, running.version)
        else:
            previous = self._route_before(task_id, model, version)
        self._status(model, version, "deploying")
        started = self._clock()
        try:
            loaded = await self._models.loaded_versions(model)
            await self._models.serve_versions(
                model, loaded | {version}, self._settings.load_timeout_s
            )
            for body in self._warmup(task_id, self._settings.warmup_requests):
                await self._models.answer(model, version, body, self._settings.load_timeout_s)
        except TritonError as error:
            self._status(model, version, "failed")
            log.error("version not loaded", model=model, version=version, error=str(error))
            self._retire(model, version)
            return
        deployment = Deployment(
            task_id,
            model,
            version,
            previous,
            plan(self._settings.canary_shares),
            window=Window(self._settings.watch_window),
        )
        self.deployments[task_id] = deployment
        loaded_s = self._clock() - started
        await self._enter(deployment, 0, f"loaded and warmed in {loaded_s:.1f} s")

    # --- stages -----------------------------------------------------------------------

    async def _enter(self, deployment: Deployment, step: int, why: str) -> None:
        stage = deployment.stages[step]
        reason = f"{deployment.model} v{deployment.version} to {stage}: {why}"
        # The stage starts before the route event goes out: a look at the rollouts while
        # it is published must see the new stage's empty tally and fresh clock.
        if stage.mode == "full" and deployment.tally.samples:
            deployment.agreement_at_full = deployment.tally.agreement
        deployment.step, deployment.tally = step, Tally()
        deployment.started, deployment.started_at = self._clock(), datetime.now(UTC)
        try:
            await self._routes.promote(
                deployment.task_id,
                deployment.model,
                deployment.version,
                stage.mode,
                stage.share,
                CONTROLLER,
                reason,
            )
        except RouteError as error:
            log.warning("rollout abandoned", task_id=deployment.task_id, error=str(error))
            self._status(deployment.model, deployment.version, "abandoned")
            self.deployments.pop(deployment.task_id, None)
            self._retire(deployment.model, deployment.version)
            return
        log.info("rollout step", task_id=deployment.task_id, reason=reason)
        if stage.mode == "full":
            self._status(deployment.model, deployment.version, "serving")
            previous = deployment.previous
            if previous.intern and (previous.target, previous.version) != (
                deployment.model,
                deployment.version,
            ):
                self._status(previous.target, previous.version, "replaced")
                self._retire(previous.target, previous.version)

    async def _rollback(self, deployment: Deployment, why: str) -> None:
        previous = deployment.previous
        if previous.intern and previous.version not in await self._loaded(previous.target):
            previous = Route()
        to = "the expert" if not previous.intern else f"{previous.target} v{previous.version}"
        reason = f"rollback of {deployment.model} v{deployment.version} to {to}: {why}"
        self.deployments.pop(deployment.task_id, None)
        await self._routes.change(
            deployment.task_id,
            target=previous.target,
            version=previous.version,
            mode=previous.mode,
            share=previous.share,
            pinned=previous.pinned,
            by=CONTROLLER,
            reason=reason,
        )
        log.warning("rolled back", task_id=deployment.task_id, reason=reason)
        self._status(deployment.model, deployment.version, "rolled_back")
        if previous.intern:
            self._status(previous.target, previous.version, "serving")
            self.retiring.pop((previous.target, previous.version), None)
        self._retire(deployment.model, deployment.version)

    async def _loaded(self, model: str) -> set[int]:
        try:
            return await self._models.loaded_versions(model)
        except TritonError:
            return set()

    # --- live evidence ----------------------------------------------------------------

    def on_comparison(self, event: ShadowCompared) -> None:
        """Counts a comparison of a version in rollout (or serving), if it is evidence for
        the stage it is in."""
        deployment = self.deployments.get(event.task_id)
        if deployment is None or (event.model, event.model_version) != (
            deployment.model,
            deployment.version,
        ):
            return
        if event.occurred_at < deployment.started_at or event.kind != deployment.stage.evidence:
            return
        deployment.tally.add(event.agree, event.fallback)
        AGREEMENT.labels(
            "deployer", deployment.task_id, deployment.model, deployment.stage.mode
        ).set(deployment.tally.agreement)
        if deployment.serving:
            deployment.window.add(event.agree, event.fallback)

    def on_route(self, event: RolloutChanged) -> None:
        """An operator's route change takes the task out of the controller's hands."""
        if event.changed_by == CONTROLLER:
            return
        deployment = self.deployments.get(event.task_id)
        if deployment is None:
            return
        if (event.target, event.model_version) == (deployment.model, deployment.version):
            return
        log.info("rollout handed to the operator", task_id=event.task_id, by=event.changed_by)
        self.deployments.pop(event.task_id)
        if not deployment.serving:
            self._status(deployment.model, deployment.version, "abandoned")
        if not event.pinned and event.mode != "off" and event.target == deployment.model:
            return  # the operator routes another version of the same model: keep it loaded
        self._retire(deployment.model, deployment.version)

    # --- the loop ---------------------------------------------------------------------

    async def tick(self) -> None:
        """Judges every rollout and unloads what has drained; called every `tick_s`."""
        now = self._clock()
        for deployment in list(self.deployments.values()):
            gate = self._settings.gate_of(deployment.task_id)
            if deployment.serving:
                verdict = watch(deployment.window, gate)
            else:
                expired = now - deployment.started > self._settings.stage_timeout_s
                verdict = judge(deployment.tally, gate, expired)
            if verdict.action == "rollback":
                await self._rollback(deployment, verdict.reason)
            elif verdict.action == "advance" and not deployment.serving:
                await self._enter(deployment, deployment.step + 1, verdict.reason)
        await self._drain(now)
        if self._request_training and now - self._drift_looked >= self._settings.drift_every_s:
            self._drift_looked = now
            await self._look_for_drift(now)

    def _retire(self, model: str, version: int) -> None:
        self.retiring.setdefault((model, version), Retiring(model, version, self._clock()))

    def _in_use(self, model: str, version: int) -> bool:
        if any((d.model, d.version) == (model, version) for d in self.deployments.values()):
            return True
        with Session(self._engine) as session:
            query = select(Rollout).where(Rollout.target == model, Rollout.model_version == version)
            return any(r.mode != "off" and not r.pinned for r in session.exec(query))

    async def _drain(self, now: float) -> None:
        for key, retiring in list(self.retiring.items()):
            if self._in_use(retiring.model, retiring.version):
                del self.retiring[key]
                continue
            try:
                count = await self._models.call_count(retiring.model, retiring.version)
                if not drained(retiring, now, count, self._settings.drain_grace_s):
                    continue
                loaded = await self._models.loaded_versions(retiring.model)
                if retiring.version in loaded:
                    await self._models.serve_versions(
                        retiring.model, loaded - {retiring.version}, self._settings.load_timeout_s
                    )
            except TritonError as error:
                log.warning("version not unloaded yet", model=retiring.model, error=str(error))
                continue
            del self.retiring[key]
            log.info("version unloaded", model=retiring.model, version=retiring.version)

    # --- drift ------------------------------------------------------------------------

    def _health(self, deployment: Deployment) -> TaskHealth:
        tally = deployment.window.tally()
        since = datetime.now(UTC) - timedelta(seconds=self._settings.drift_every_s)
        recent = traffic_since(self._engine, deployment.task_id, since)
        with Session(self._engine) as session:
            version = session.get(ModelVersion, (deployment.model, deployment.version))
        scores = version.scores if version else {}
        taken = version.created_at if version else datetime.now(UTC)
        calls = recent.calls
        return TaskHealth(
            task_id=deployment.task_id,
            agreement_at_full=deployment.agreement_at_full,
            agreement_now=tally.agreement,
            samples=tally.samples,
            fallback_rate=tally.fallback_rate,
            expert_share=(recent.by_expert - recent.deferred) / calls if calls else 0.0,
            new_calls=traffic_since(self._engine, deployment.task_id, taken).calls,
            train_examples=int(scores.get("train_examples", 0)),
            calls=calls,
            deferred_share=recent.deferred / calls if calls else 0.0,
            expected_deferred_share=1.0 - scores.get("coverage", 1.0),
        )

    async def _look_for_drift(self, now: float) -> None:
        """Asks the trainer for a new version of each served task that drifted."""
        settings = self._settings
        policy = DriftPolicy(
            agreement_drop=settings.drift_agreement_drop,
            max_fallback_rate=settings.drift_max_fallback_rate,
            max_expert_share=settings.drift_max_expert_share,
            deferral_rise=settings.drift_deferral_rise,
            min_samples=settings.gate.min_samples,
            cooldown_s=settings.drift_cooldown_s,
        )
        for deployment in list(self.deployments.values()):
            if not deployment.serving:
                continue
            asked = self._training_asked.get(deployment.task_id)
            reasons = should_retrain(
                self._health(deployment), policy, None if asked is None else now - asked
            )
            if not reasons:
                continue
            why = "; ".join(reasons)
            try:
                await self._request_training(deployment.task_id, why)
            except Exception as error:  # the trainer is away: asked again next time
                log.warning(
                    "new version not requested", task_id=deployment.task_id, error=repr(error)
                )
                continue
            self._training_asked[deployment.task_id] = now
            log.info("new version requested", task_id=deployment.task_id, reason=why)

    # --- takeover ---------------------------------------------------------------------

    async def resume(self) -> None:
        """What a replica does when it becomes the active one: watch the serving versions,
        restart interrupted rollouts from shadow, and start those never begun."""
        with Session(self._engine) as session:
            rows = list(
                session.exec(
                    select(ModelVersion)
                    .where(col(ModelVersion.status).in_(("registered", "deploying", "serving")))
                    .order_by(col(ModelVersion.version))
                )
            )
        for row in rows:
            if row.task_id in self.deployments:
                continue
            if row.status == "serving":
                current = self._routes.current(row.task_id)
                if current and (current.target, current.model_version) == (row.model, row.version):
                    deployment = Deployment(
                        row.task_id,
                        row.model,
                        row.version,
                        Route(),
                        plan(self._settings.canary_shares),
                        window=Window(self._settings.watch_window),
                    )
                    deployment.step = len(deployment.stages) - 1
                    self.deployments[row.task_id] = deployment
                continue
            self._status(row.model, row.version, "registered")
            await self._deploy(row.task_id, row.model, row.version)


async def control_loop(deployer: Deployer, lease, tick_s: float) -> None:
    """Every `tick_s`: take or renew the lease; the holder resumes what it finds when it
    becomes active, then judges the rollouts. A replica that loses the lease forgets its
    rollouts (the new holder resumes them from the database)."""
    import asyncio

    while True:
        was_active = lease.held
        try:
            active = await asyncio.to_thread(lease.renew)
        except Exception as error:  # the database is away: act no more until it is back
            log.warning("lease not renewed", error=repr(error))
            active = lease.held = False
        try:
            if active and not was_active:
                log.info("active controller", holder=lease.holder)
                await deployer.resume()
            elif was_active and not active:
                log.warning("lease lost: another controller is active", holder=lease.holder)
                deployer.deployments.clear()
                deployer.retiring.clear()
            if active:
                await deployer.tick()
        except Exception:
            log.exception("controller step failed")
        await asyncio.sleep(tick_s)
