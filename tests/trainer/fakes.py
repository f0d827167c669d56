"""A light stand-in for the ML core (examples, training, evaluation, runtime), so that the
job pipeline's bookkeeping is tested in milliseconds. The real core is tested in
tests/trainer/test_ml_*.py and, with this pipeline, in tests/integration/test_trainer_*.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from interns.trainer.evaluation import EvalReport
from interns.trainer.pipeline import MlCore
from interns.trainer.training import Progress


class Cancelled(Exception):
    pass


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing of the pipeline's clean-up runs."""


@dataclass
class FakeExample:
    trace_id: str
    session_id: str


@dataclass
class FakeCore:
    steps: int = 10
    checkpoint_every: int = 4
    score: float = 1.0
    kill_at_step: int | None = None
    on_step: callable = None
    trained: list[int] = field(default_factory=list)
    trained_on: int = 0

    def load_examples(self, engine, task_id, *, limit=None):
        return [FakeExample(f"t{i}", f"s{i % 10}") for i in range(40)][:limit]

    def split_by_session(self, examples, eval_share=0.2, seed=0):
        held_out = {"s0", "s1"}
        return (
            [e for e in examples if e.session_id not in held_out],
            [e for e in examples if e.session_id in held_out],
        )

    def related_examples(self, engine, examples, *, limit):
        return [FakeExample(f"r{i}", f"other{i}") for i in range(min(limit, 5))]

    def train(self, spec, examples, config, workdir: Path, on_progress, should_stop) -> Path:
        self.trained_on = len(examples)
        checkpoint = workdir / "checkpoints" / "step"
        start = int(checkpoint.read_text()) if checkpoint.exists() else 0
        for step in range(start + 1, self.steps + 1):
            if self.kill_at_step == step:
                self.kill_at_step = None
                raise WorkerKilled
            if should_stop():
                raise Cancelled
            self.trained.append(step)
            on_progress(Progress(step, self.steps, 1.0 / step, float(self.steps - step)))
            if self.on_step:
                self.on_step(step)
            if step % self.checkpoint_every == 0:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                checkpoint.write_text(str(step))
        model = workdir / "model"
        model.mkdir(exist_ok=True)
        (model / "weights.json").write_text(json.dumps({"spec": spec.name}))
        return model

    def evaluate(self, runtime, examples, output_kind, target_precision=0.95, ignore_dates=False):
        return EvalReport(
            len(examples), {"exact_match": self.score, "argument_accuracy": 1.0}, 12.5
        )

    def core(self) -> MlCore:
        return MlCore(
            load_examples=self.load_examples,
            split_by_session=self.split_by_session,
            related_examples=self.related_examples,
            train=self.train,
            evaluate=self.evaluate,
            load_runtime=lambda path: object(),
            train_config=dict,
            cancelled=Cancelled,
        )
