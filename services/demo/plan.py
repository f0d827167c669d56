"""The demo's plan: how the time budget is spent, and the settings the stack runs with.

The replay has two phases. `discover` sends one pass over the (shuffled) workload fast
enough that the miner finds the tasks within minutes, slowly enough that the most frequent
tasks reach the training policy's `min_examples` first (so their jobs are queued first: the
worker trains one job at a time, in order). `serve` keeps a steady rate until the end, so
that rollouts gather live comparisons and the interns that made it serve the traffic.

Everything the services need to fit the budget goes to them as their own settings
(environment variables of the stack's processes): nothing in a service knows about the demo.
A variable already set in the demo's environment wins over the plan's value.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, Field

# Measured on this 2-core machine (SmolLM2-135M, LoRA on 8 layers, batch 8, 416 tokens):
# about 6 s a step when quiet; the demo's own traffic and neighbours make it slower.
SECONDS_PER_STEP = 7.5
# Per job besides its steps, on a quiet machine: loading the base model, evaluating the
# held-out calls (about 20, a second or two each), exporting.
JOB_OVERHEAD_S = 90.0
# A rollout from a registered version to full: load, shadow, canary (measured figures vary
# with the task's share of the traffic; this is what the demo plans for).
ROLLOUT_S = 300.0


class Phase(BaseModel):
    name: str
    start_s: float = Field(description="Seconds after the replay starts")
    end_s: float
    rate: float = Field(description="Calls a second")


class DemoPlan(BaseModel):
    """What the demo will do, computed before it starts (and printed)."""

    budget_s: float
    workload: str
    workload_format: str
    records: int
    calls: int = Field(description="Calls the replay sends at most")
    phases: list[Phase]
    startup_reserve_s: float
    teardown_reserve_s: float
    min_examples: int = Field(description="Traces a task needs before its intern is trained")
    max_steps: int = Field(description="Training steps per intern")
    training_deadline_s: float = Field(
        description="No job starts after this (seconds after the replay starts): queued ones"
        " are cancelled, as they could not be rolled out in time"
    )
    slowdown: float = Field(1.0, description="How much slower than a quiet machine it plans")
    interns: int = Field(description="Interns the training budget is shared by")
    min_agreement: float
    min_samples: int
    canary_shares: list[float]
    check_share: float
    concurrency: int = 8
    seed: int = 0
    settings: dict[str, str] = Field(description="Environment of the stack's processes")

    @property
    def replay_s(self) -> float:
        return self.phases[-1].end_s

    def lines(self) -> list[str]:
        """The plan as people read it."""
        minutes = math.ceil(self.budget_s / 60)
        lines = [
            f"finishes in at most {minutes} minutes (stack start, replay, report, stack stop)",
            f"workload {self.workload}: {self.records} records ({self.workload_format})",
        ]
        for phase in self.phases:
            lines.append(
                f"  {phase.name:>8}: {phase.start_s / 60:4.1f}-{phase.end_s / 60:4.1f} min,"
                f" {phase.rate:g} calls/s"
            )
        if self.slowdown > 1:
            lines.append(
                f"the machine is busy: training planned {self.slowdown:.1f}x slower than on a"
                " quiet one"
            )
        lines += [
            f"a task gets an intern from {self.min_examples} traces; training planned for"
            f" {self.interns} intern(s) of {self.max_steps} steps, the most frequent tasks first;"
            f" no job starts after {self.training_deadline_s / 60:.1f} min",
            f"rollouts: shadow, canary {', '.join(f'{s:.0%}' for s in self.canary_shares)}, full;"
            f" each step needs {self.min_samples} live comparisons with agreement"
            f" >= {self.min_agreement:.0%} (expert checks of {self.check_share:.0%} of the"
            " intern-served calls)",
        ]
        return lines


def make_plan(
    workload: str,
    workload_format: str,
    records: int,
    budget_s: float = 1800.0,
    serve_rate: float = 10.0,
    limit: int = 0,
    startup_reserve_s: float = 90.0,
    teardown_reserve_s: float = 60.0,
    seconds_per_step: float = SECONDS_PER_STEP,
    interns: int = 2,
    slowdown: float = 1.0,
) -> DemoPlan:
    """The plan for a workload of `records` calls and a budget of `budget_s` seconds (stack
    start and stop included); `limit` caps the calls sent (0: no cap); the training budget
    is shared by the `interns` most frequent tasks (more start if time is left); training
    and evaluation are planned `slowdown` times slower than on a quiet machine."""
    if records < 1:
        raise ValueError("the workload has no record to replay")
    replay_s = budget_s - startup_reserve_s - teardown_reserve_s
    if replay_s < 30:
        raise ValueError(
            f"a budget of {budget_s:.0f} s leaves {replay_s:.0f} s to replay: give it more"
        )
    # Discovery: one pass over the workload in at most 40% of the replay, at most 25 calls
    # a second (the miner must see the tasks grow, not jump).
    discover_s = min(0.4 * replay_s, max(records / 25.0, 0.15 * replay_s))
    discover_rate = max(math.ceil(records / discover_s * 100) / 100, 0.5)
    phases = [
        Phase(name="discover", start_s=0.0, end_s=round(discover_s, 1), rate=discover_rate),
        Phase(
            name="serve", start_s=round(discover_s, 1), end_s=round(replay_s, 1), rate=serve_rate
        ),
    ]
    calls = math.ceil(discover_s * discover_rate + (replay_s - discover_s) * serve_rate)
    if limit:
        calls = min(calls, limit)
    # A task is trained once it holds a tenth of a small workload, 100 traces of a big one.
    min_examples = max(10, min(100, records // 10))
    # The first job starts about when the biggest task reaches `min_examples` (a few
    # percent of the workload into discovery); it must leave time for its rollout.
    first_job_s = 0.4 * discover_s
    # Jobs run one after the other; the last must be rolled out with time left to serve.
    train_window = replay_s - first_job_s - ROLLOUT_S - 0.15 * replay_s
    step_s, overhead_s = seconds_per_step * slowdown, JOB_OVERHEAD_S * slowdown
    # A busy machine trains fewer interns, the most frequent tasks' (their jobs come first),
    # rather than more interns too short to learn anything.
    interns = max(1, round(interns / slowdown))
    per_job = train_window / interns - overhead_s
    max_steps = max(2, min(120, int(per_job / step_s)))
    job_s = overhead_s + max_steps * step_s
    # On a short budget no job could be rolled out anyway: let the first ones run.
    training_deadline_s = max(0.5 * replay_s, replay_s - job_s - ROLLOUT_S)
    min_agreement, min_samples, canary_shares, check_share = 0.95, 20, [0.5], 0.5
    settings = {
        "MINER_INTERVAL_S": "3",
        "TRAINER_POLICY__MIN_EXAMPLES": str(min_examples),
        # Workloads with many tasks (SGD: 107, the largest 3.8% of the calls) would have
        # 2% leave out tasks that are frequent and consistent enough to learn.
        "TRAINER_POLICY__MIN_TRAFFIC_SHARE": "0.01",
        # One intern per task within a demo: retraining would spend the budget twice.
        "TRAINER_POLICY__RETRAIN_GROWTH": "1000",
        # The step time above was measured with LoRA on the top layers: a few fast steps
        # suit a demo's budget (full fine-tuning takes 2.5 times as long a step).
        "TRAINER_BASE_MODEL": "smollm2-135m-instruct-lora",
        "TRAINER_TRAINING__MAX_STEPS": str(max_steps),
        # The step time above was measured at 416 tokens (the default is 512).
        "TRAINER_TRAINING__MAX_LENGTH": "416",
        "TRAINER_MAX_EXAMPLES": "400",
        "DEPLOYER_CANARY_SHARES": json.dumps(canary_shares),
        "DEPLOYER_GATE__MIN_SAMPLES": str(min_samples),
        "DEPLOYER_GATE__MIN_AGREEMENT": str(min_agreement),
        "DEPLOYER_STAGE_TIMEOUT_S": str(int(ROLLOUT_S)),
        "DEPLOYER_TICK_S": "0.5",
        "DEPLOYER_WARMUP_REQUESTS": "2",
        # No drift requests within a demo: there is no time to train a second version.
        "DEPLOYER_DRIFT_EVERY_S": str(int(budget_s * 10)),
        "ROUTER_CHECK_SHARE": str(check_share),
        # Interns answer in seconds on a busy CPU; the expert still answers a slow one.
        "ROUTER_INTERN_TIMEOUT_S": "8",
    }
    # What the operator exported wins: the plan reports what the services really use.
    for name in settings:
        if name in os.environ:
            settings[name] = os.environ[name]
    min_examples = int(settings["TRAINER_POLICY__MIN_EXAMPLES"])
    max_steps = int(settings["TRAINER_TRAINING__MAX_STEPS"])
    min_samples = int(settings["DEPLOYER_GATE__MIN_SAMPLES"])
    min_agreement = float(settings["DEPLOYER_GATE__MIN_AGREEMENT"])
    canary_shares = json.loads(settings["DEPLOYER_CANARY_SHARES"])
    check_share = float(settings["ROUTER_CHECK_SHARE"])
    return DemoPlan(
        budget_s=budget_s,
        workload=workload,
        workload_format=workload_format,
        records=records,
        calls=calls,
        slowdown=round(slowdown, 2),
        interns=interns,
        phases=phases,
        startup_reserve_s=startup_reserve_s,
        teardown_reserve_s=teardown_reserve_s,
        min_examples=min_examples,
        max_steps=max_steps,
        training_deadline_s=round(training_deadline_s, 1),
        min_agreement=min_agreement,
        min_samples=min_samples,
        canary_shares=canary_shares,
        check_share=check_share,
        settings=settings,
    )


def machine_slowdown(load_average: float, cores: int, most: float = 4.0) -> float:
    """How much slower than on a quiet machine training will run: the neighbours' load plus
    the demo's own training job, over the cores (1 on a quiet machine, at most `most`)."""
    return min(most, max(1.0, (load_average + 1) / max(cores, 1)))


@contextmanager
def stack_environment(settings: dict[str, str]) -> Iterator[None]:
    """The plan's settings in this process's environment while the stack starts (its
    processes inherit it); restored afterwards."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
