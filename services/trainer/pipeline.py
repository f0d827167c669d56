"""One training job from start to end (S5): the plain code behind the Celery task.

`run_job` loads the task's redacted expert answers, splits them by session, fine-tunes the
base model chosen when the job was created, evaluates the candidate on the held-out
sessions, exports it to the Triton repository when it passes the gate, registers the
version (passed or rejected, with its scores) and publishes `ModelRegistered`. Progress
(step, loss, ETA) goes to the job row and to `interns.training.v1` as it happens.

Delivery is at least once, so a job is safe to run again:
- a job that ended (succeeded, failed, cancelled) is left as it is;
- a job another worker is running (its heartbeat is fresh) raises `JobBusy`: the task is
  retried later, so the job is not lost if that worker dies;
- a job whose worker died resumes from the checkpoints in its own folder
  (`<workdir>/<job_id>`), and reuses the version number it reserved.
A cancel request (`cancel_requested` on the row) stops training at the next step. A worker
that is shutting down (`JobContext.stopping`) also stops at the next step, after a
checkpoint, puts the job back to `queued` and raises `JobInterrupted`: the task hands the
message back to the queue and the next worker resumes the job.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common.db import ModelVersion, Rollout, Task, TrainingJob
from interns.common.events import Event, ModelRegistered, TrainingJobProgress
from interns.common.logging import get_logger
from interns.trainer.catalog import find_spec
from interns.trainer.export import export_version, folder_size, model_name, next_version
from interns.trainer.models import BaseModelSpec
from interns.trainer.settings import TrainerSettings
from interns.trainer.training import set_defer_threshold

log = get_logger(__name__)

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")


class JobBusy(Exception):
    """Another worker runs this job and is alive: try again later."""


class JobInterrupted(Exception):
    """The worker is shutting down; the job was checkpointed and is queued again."""


class JobFailed(Exception):
    """The job cannot go on; the message says why and is recorded on the job."""


@dataclass(frozen=True)
class MlCore:
    """The ML functions a job calls (`interns.trainer.examples`, `training`, `runtime`,
    `evaluation`); tests give light stand-ins."""

    load_examples: Callable[..., list]
    split_by_session: Callable[..., tuple[list, list]]
    related_examples: Callable[..., list]
    train: Callable[..., Path]
    evaluate: Callable[..., Any]
    load_runtime: Callable[[Path], Any]
    train_config: Callable[..., Any]
    cancelled: type[Exception]


def real_ml_core() -> MlCore:
    """The real ML core; imported here, in the worker, so the control service needs no torch."""
    from interns.trainer import evaluation, examples, runtime, training

    return MlCore(
        load_examples=examples.load_examples,
        split_by_session=examples.split_by_session,
        related_examples=examples.related_examples,
        train=training.train,
        evaluate=evaluation.evaluate,
        load_runtime=runtime.InternRuntime.load,
        train_config=training.TrainConfig,
        cancelled=training.TrainingCancelled,
    )


@dataclass
class JobContext:
    engine: Engine
    settings: TrainerSettings
    catalog: tuple[BaseModelSpec, ...]
    core: MlCore
    publish: Callable[[Event], None] = lambda event: None
    publish_and_wait: Callable[[Event], bool] = lambda event: True
    lease_s: float = 120.0
    cancel_poll_s: float = 1.0
    clock: Callable[[], float] = field(default=time.monotonic)
    stopping: threading.Event = field(default_factory=threading.Event)


def _now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_job(engine: Engine, job_id: str) -> TrainingJob | None:
    with Session(engine) as session:
        return session.get(TrainingJob, job_id)


def update_job(engine: Engine, job_id: str, **fields: Any) -> TrainingJob:
    with Session(engine) as session:
        job = session.get(TrainingJob, job_id)
        job.updated_at = _now()
        for name, value in fields.items():
            setattr(job, name, value)
        session.add(job)
        session.commit()
        session.refresh(job)
        return job


def outcome(job: TrainingJob) -> dict[str, Any]:
    """The Celery task's JSON result."""
    return {
        "job_id": job.job_id,
        "status": job.status,
        "model": job.model,
        "model_version": job.model_version,
        "error": job.error,
    }


def progress_event(job: TrainingJob) -> TrainingJobProgress:
    return TrainingJobProgress(
        job_id=job.job_id,
        task_id=job.task_id,
        base_model=job.base_model,
        status=job.status,
        step=job.step,
        total_steps=job.total_steps,
        loss=job.loss,
        eta_seconds=job.eta_seconds,
        error=job.error,
    )


class _Heartbeat:
    """Touches the job row while the job runs, so that a redelivery can tell a live worker
    from a dead one even in long phases without progress (loading, evaluation)."""

    def __init__(self, engine: Engine, job_id: str, interval_s: float):
        self._engine, self._job_id, self._interval_s = engine, job_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                update_job(self._engine, self._job_id)
            except Exception as error:
                log.warning("heartbeat not written", job_id=self._job_id, error=repr(error))

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def _claim(ctx: JobContext, job_id: str) -> TrainingJob | dict[str, Any]:
    """Marks the job running for this worker, or says why it must not run here."""
    with Session(ctx.engine) as session:
        job = session.get(TrainingJob, job_id)
        if job is None:
            raise JobFailed(f"no training job {job_id!r}")
        if job.status in TERMINAL:
            log.info("job already ended; nothing to do", job_id=job_id, status=job.status)
            return outcome(job)
        if job.status == "running":
            idle = _now() - as_utc(job.updated_at)
            if idle < timedelta(seconds=ctx.lease_s):
                raise JobBusy(f"job {job_id} is running elsewhere (seen {idle.seconds}s ago)")
            log.warning("resuming a job whose worker stopped", job_id=job_id, idle_s=idle.seconds)
        job.attempts += 1
        job.status = "cancelled" if job.cancel_requested else "running"
        job.error = ""
        job.updated_at = _now()
        session.add(job)
        session.commit()
        session.refresh(job)
    ctx.publish(progress_event(job))
    return outcome(job) if job.status == "cancelled" else job


def run_job(job_id: str, ctx: JobContext) -> dict[str, Any]:
    """Runs (or resumes, or skips) the training job `job_id`; returns its outcome."""
    claimed = _claim(ctx, job_id)
    if isinstance(claimed, dict):
        return claimed
    job = claimed
    workdir = ctx.settings.workdir / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("training job started", job_id=job_id, task_id=job.task_id, attempt=job.attempts)
    status, error = "succeeded", ""
    with _Heartbeat(ctx.engine, job_id, max(ctx.lease_s / 4, 0.2)):
        try:
            _train_evaluate_register(ctx, job, workdir)
        except ctx.core.cancelled:
            if ctx.stopping.is_set() and not load_job(ctx.engine, job_id).cancel_requested:
                update_job(ctx.engine, job_id, status="queued", eta_seconds=None)
                log.info("job interrupted by the worker's shutdown; queued again", job_id=job_id)
                raise JobInterrupted(job_id) from None
            status = "cancelled"
        except JobFailed as failure:
            status, error = "failed", str(failure)
        except Exception as failure:
            log.exception("training job failed", job_id=job_id)
            status, error = "failed", f"{type(failure).__name__}: {failure}"
    job = update_job(ctx.engine, job_id, status=status, error=error, eta_seconds=0.0)
    ctx.publish(progress_event(job))
    log.info("training job ended", job_id=job_id, status=status, error=error)
    if status != "failed" and not ctx.settings.keep_workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    return outcome(job)


def _progress_recorder(ctx: JobContext, job: TrainingJob) -> Callable[[Any], None]:
    first = True

    def on_progress(progress) -> None:
        nonlocal first
        fields = dict(
            step=progress.step,
            total_steps=progress.total_steps,
            loss=progress.loss,
            eta_seconds=progress.eta_seconds,
        )
        if first and job.attempts > 1 and progress.step > 1:
            fields["resumed_at_step"] = progress.step
            log.info("training resumed from a checkpoint", job_id=job.job_id, step=progress.step)
        first = False
        ctx.publish(progress_event(update_job(ctx.engine, job.job_id, **fields)))

    return on_progress


def _cancel_watcher(ctx: JobContext, job_id: str) -> Callable[[], bool]:
    last_check, cancelled = float("-inf"), False

    def should_stop() -> bool:
        nonlocal last_check, cancelled
        if ctx.stopping.is_set():
            return True
        if not cancelled and ctx.clock() - last_check >= ctx.cancel_poll_s:
            last_check = ctx.clock()
            current = load_job(ctx.engine, job_id)
            cancelled = current is None or current.cancel_requested
        return cancelled

    return should_stop


def _reserve_version(ctx: JobContext, job: TrainingJob) -> tuple[str, int]:
    """The job's model version: reserved once (a redelivered job keeps its number), above
    every version in the repository, registered, or reserved by another job."""
    if job.model and job.model_version:
        return job.model, job.model_version
    model = model_name(job.task_id)
    with Session(ctx.engine) as session:
        registered = session.exec(
            select(ModelVersion.version).where(ModelVersion.model == model)
        ).all()
        reserved = session.exec(
            select(TrainingJob.model_version).where(col(TrainingJob.model) == model)
        ).all()
        version = next_version(Path(ctx.settings.model_repository), model, [*registered, *reserved])
        row = session.get(TrainingJob, job.job_id)
        row.model, row.model_version = model, version
        session.add(row)
        session.commit()
    return model, version


def _serving_baseline(
    ctx: JobContext, task_id: str, eval_set: list, output_kind: str
) -> dict[str, float]:
    """The intern serving the task, scored on the candidate's held-out set: a new version
    must beat it on the same examples (`baseline_<metric>`, `baseline_version`); nothing
    when no intern serves the task or its files are gone."""
    with Session(ctx.engine) as session:
        route = session.get(Rollout, task_id)
    if route is None or route.target == "expert" or route.mode == "off":
        return {}
    folder = Path(ctx.settings.model_repository) / route.target / str(route.model_version)
    if not (folder / "model").is_dir():
        log.warning("serving version's files missing", task_id=task_id, folder=str(folder))
        return {}
    baseline = ctx.core.evaluate(ctx.core.load_runtime(folder / "model"), eval_set, output_kind)
    return {
        "baseline_version": float(route.model_version),
        **{f"baseline_{metric}": value for metric, value in baseline.scores.items()},
    }


def _train_evaluate_register(ctx: JobContext, job: TrainingJob, workdir: Path) -> None:
    settings, core = ctx.settings, ctx.core
    spec = find_spec(ctx.catalog, job.base_model)
    with Session(ctx.engine) as session:
        task = session.get(Task, job.task_id)
    if task is None:
        raise JobFailed(f"task {job.task_id!r} no longer exists")
    examples = core.load_examples(ctx.engine, job.task_id, limit=settings.max_examples)
    train_set, eval_set = core.split_by_session(
        examples, settings.eval_share, settings.training.seed
    )
    if not train_set or not eval_set:
        raise JobFailed(
            f"{len(examples)} usable examples give {len(train_set)} to train on and"
            f" {len(eval_set)} to evaluate; both need some (more sessions)"
        )
    related = []
    if task.output_kind == "tool_call" and settings.related_share > 0:
        related = core.related_examples(
            ctx.engine, examples, limit=int(len(train_set) * settings.related_share)
        )
    log.info(
        "data set",
        job_id=job.job_id,
        train=len(train_set),
        related=len(related),
        eval=len(eval_set),
    )
    config = core.train_config(**settings.training.model_dump())
    started = time.perf_counter()
    model_dir = core.train(
        spec,
        train_set + related,
        config,
        workdir,
        on_progress=_progress_recorder(ctx, job),
        should_stop=_cancel_watcher(ctx, job.job_id),
    )
    train_seconds = time.perf_counter() - started
    report = core.evaluate(
        core.load_runtime(model_dir),
        eval_set,
        task.output_kind,
        target_precision=settings.gate.target_precision,
        ignore_dates=settings.gate.ignore_dates,
    )
    verdict = settings.gate.check(task.output_kind, report.scores, report.n)
    if settings.gate.is_selective(task.output_kind):
        set_defer_threshold(model_dir, report.defer_below)
    log.info("candidate evaluated", job_id=job.job_id, scores=report.scores, gate=verdict.reasons)
    model, version = _reserve_version(ctx, job)
    if verdict.train:
        size_bytes = export_version(
            model_dir, Path(settings.model_repository), model, version
        ).size_bytes
    else:
        size_bytes = folder_size(model_dir)
    scores = {
        **report.scores,
        **_serving_baseline(ctx, job.task_id, eval_set, task.output_kind),
        "eval_examples": float(report.n),
        "train_examples": float(len(train_set)),
        "related_examples": float(len(related)),
        "train_seconds": round(train_seconds, 1),
    }
    with Session(ctx.engine) as session:
        session.merge(
            ModelVersion(
                model=model,
                version=version,
                task_id=job.task_id,
                base_model=spec.name,
                status="registered" if verdict.train else "rejected",
                scores=scores,
                latency_ms=report.latency_ms_p50,
                size_bytes=size_bytes,
            )
        )
        session.commit()
    registered = ModelRegistered(
        task_id=job.task_id,
        model=model,
        version=version,
        base_model=spec.name,
        passed=verdict.train,
        scores=scores,
        latency_ms=report.latency_ms_p50,
        size_bytes=size_bytes,
    )
    if not ctx.publish_and_wait(registered):
        log.error("ModelRegistered not published", model=model, version=version)
