"""`make bench-trainer`: interns for the most frequent SGD tasks, trained and measured here.

The SGD workload is stored as traces (a SQLite file, written by the collector's code),
mined into tasks by the miner's code, and for the `--tasks` largest tasks: examples loaded
and split by session (the trainer's code), the intern fine-tuned from the default catalog's
CPU base, scored on the held-out traces (exact tool-call match with and without date
arguments, per-argument accuracy), exported into a Triton model repository and served by
the real Triton server, where its latency per call is measured one call at a time.
Writes `bench-results/trainer.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from interns.bench.miner import store_traces
from interns.bench.processes import free_ports
from interns.common.answers import is_date_argument, tool_calls
from interns.common.db import Task, make_engine, upgrade_database
from interns.common.intern_contract import INPUT_NAME, OUTPUT_NAME, decode_response, encode_request
from interns.expert.replay import load_workload
from interns.miner.mining import MiningState, mine_new_traces, upsert_tasks
from interns.miner.subclusters import minilm_embedder
from interns.stack.components import prepare_triton_backends, triton_env, triton_home
from interns.trainer.augment import is_copyable
from interns.trainer.catalog import DEFAULT_CATALOG, select_base
from interns.trainer.evaluation import evaluate
from interns.trainer.examples import load_examples, related_examples, split_by_session
from interns.trainer.export import export_version, model_name
from interns.trainer.runtime import InternRuntime
from interns.trainer.settings import TrainerSettings
from interns.trainer.training import (
    Progress,
    TrainConfig,
    prompt_ids,
    recipe,
    set_defer_threshold,
    train,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORKLOAD = REPO.parent / "shared" / "workloads" / "sgd" / "sgd_service_calls_dev.jsonl"
console = Console()


def mine_top_tasks(engine: Any, count: int) -> list[Task]:
    """The `count` largest active tasks the miner finds in the stored traces (signatures
    split into sub-tasks where they hold several, as the miner service does)."""
    from sqlmodel import Session, select

    state = MiningState(embed=minilm_embedder())
    mine_new_traces(engine, state)
    upsert_tasks(engine, state)
    with Session(engine) as session:
        tasks = session.exec(select(Task).where(Task.status == "active")).all()
    return sorted(tasks, key=lambda task: -task.size)[:count]


def values_in_prompt(tokenizer: Any, examples: list[Any], config: TrainConfig) -> float:
    """The share of `examples` whose expected tool calls take every copyable argument value
    (a word-like string, not a date, time, number or boolean: augment.is_copyable) from
    the intern's prompt, as it is rendered for them. The rest need a value inferred
    ("reasonably priced" is `moderate`) or said outside the prompt: a bound on what an intern
    that only copies well gets right."""
    found = 0
    for example in examples:
        prompt = tokenizer.decode(prompt_ids(tokenizer, example.request, config)).lower()
        values = [
            value.strip().lower()
            for _, arguments in tool_calls(example.answer)
            for key, value in arguments.items()
            if is_copyable(value) and not is_date_argument(key, value)
        ]
        found += all(value in prompt for value in values)
    return found / len(examples) if examples else 0.0


def torch_threads(threads: int | None = None) -> int:
    """Torch's intra-op thread count, set first to `threads` when given."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


class TritonServer:
    """A Triton server on free ports of 127.0.0.1 over `repository`, models loaded
    explicitly."""

    def __init__(self, repository: Path, state: Path):
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        backends = prepare_triton_backends(state)
        self.log = (state / "triton.log").open("w")
        self.process = subprocess.Popen(
            [
                str(triton_home() / "bin" / "tritonserver"),
                f"--model-repository={repository}",
                f"--backend-directory={backends}",
                "--model-control-mode=explicit",
                # This machine only: its model control is open (the bench loads models).
                "--http-address=127.0.0.1",
                "--grpc-address=127.0.0.1",
                f"--grpc-port={self.grpc_port}",
                f"--http-port={self.http_port}",
                f"--metrics-port={self.metrics_port}",
            ],
            env={**os.environ, **triton_env(str(Path(sys.executable).parent))},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.is_server_live():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        raise RuntimeError(f"Triton did not start; see {state / 'triton.log'}")

    def latencies_ms(self, model: str, requests: list[dict]) -> list[float]:
        import numpy as np
        import tritonclient.grpc as grpcclient

        self.client.load_model(model, client_timeout=600)
        timings = []
        for body in requests:
            row = grpcclient.InferInput(INPUT_NAME, [1, 1], "BYTES")
            row.set_data_from_numpy(np.array([[encode_request(body)]], dtype=np.object_))
            began = time.perf_counter()
            result = self.client.infer(model, [row], client_timeout=120)
            timings.append((time.perf_counter() - began) * 1000)
            decode_response(result.as_numpy(OUTPUT_NAME)[0][0])
        self.client.unload_model(model)
        return timings

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def main(
    out: Path = typer.Option(Path("bench-results/trainer.json"), help="Where the figures go"),
    workload: Path = typer.Option(DEFAULT_WORKLOAD, help="SGD workload file"),
    tasks: int = typer.Option(3, help="How many of the largest tasks"),
    max_steps: int | None = typer.Option(None, help="Cap on training steps (smoke runs)"),
    latency_calls: int = typer.Option(20, help="Calls per intern timed on Triton"),
    max_eval: int | None = typer.Option(None, help="Cap on held-out examples (smoke runs)"),
    workdir: Path | None = typer.Option(None, help="Keep the run's files here"),
) -> None:
    """Trains interns for the largest SGD tasks and prints their quality and latency."""
    root = workdir or Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'traces.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    records = list(load_workload(workload))
    store_traces(engine, records, len(records), 0, seed=0)
    threads = torch_threads()
    top = mine_top_tasks(engine, tasks)
    # The miner's embedder sets torch to one thread for the whole process; the trainer's
    # worker trains with torch's default (every core), so the bench does too.
    torch_threads(threads)
    console.print(f"{len(records)} traces stored; largest tasks: {[t.label for t in top]}")
    settings = TrainerSettings()
    # The base the trainer would choose for these tasks on a CPU worker.
    spec = select_base(
        "tool_call",
        DEFAULT_CATALOG,
        device="cpu",
        memory_budget_mb=settings.memory_budget_mb,
        requested=settings.base_model,
    ).spec
    config = TrainConfig(**{**settings.training.model_dump(), "max_steps": max_steps})
    epochs, learning_rate = recipe(spec, config)
    repository = root / "model-repository"
    results, trained = [], []
    for task in top:
        examples = load_examples(engine, task.task_id, limit=settings.max_examples)
        train_set, eval_set = split_by_session(examples, settings.eval_share, config.seed)
        eval_set = eval_set[:max_eval] if max_eval else eval_set
        # As the trainer does: other tasks' calls of the same tools join the training set.
        related = (
            related_examples(engine, examples, limit=int(len(train_set) * settings.related_share))
            if task.output_kind == "tool_call"
            else []
        )
        console.print(
            f"[bold]{task.task_id}[/] {task.label}: {len(train_set)} train"
            f" (+{len(related)} related), {len(eval_set)} eval"
        )

        def report(progress: Progress) -> None:
            if progress.step % 5 == 0 or progress.step == progress.total_steps:
                console.print(
                    f"  step {progress.step}/{progress.total_steps} loss {progress.loss:.3f}"
                    f" eta {progress.eta_seconds or 0:.0f}s"
                )

        began = time.perf_counter()
        model_dir = train(
            spec, train_set + related, config, root / task.task_id, on_progress=report
        )
        train_seconds = time.perf_counter() - began
        runtime = InternRuntime.load(model_dir)
        scored = evaluate(
            runtime,
            eval_set,
            task.output_kind,
            target_precision=settings.gate.target_precision,
        )
        # As the trainer does: the exported intern defers below its calibrated threshold.
        set_defer_threshold(model_dir, scored.defer_below)
        console.print(f"  scores {scored.scores} defer below {scored.defer_below}")
        exported = export_version(model_dir, repository, model_name(task.task_id), 1)
        trained.append((exported.model, [e.request for e in eval_set[:latency_calls]]))
        results.append(
            {
                "task": task.task_id,
                "label": task.label,
                "train_examples": len(train_set),
                "related_examples": len(related),
                "eval_examples": scored.n,
                "exact_match": round(scored.scores.get("exact_match", 0.0), 4),
                "exact_match_without_dates": round(
                    scored.scores.get("exact_match_without_dates", 0.0), 4
                ),
                "argument_accuracy": round(scored.scores.get("argument_accuracy", 0.0), 4),
                "name_accuracy": round(scored.scores.get("name_accuracy", 0.0), 4),
                "values_in_prompt": round(values_in_prompt(runtime.tokenizer, eval_set, config), 4),
                "coverage": round(scored.scores.get("coverage", 0.0), 4),
                "served_exact_match": round(scored.scores.get("served_exact_match", 0.0), 4),
                "defer_below": scored.defer_below,
                "train_seconds": round(train_seconds, 1),
                "in_process_latency_ms_p50": round(scored.latency_ms_p50, 1),
            }
        )
    server = TritonServer(repository, root)
    try:
        for result, (model, requests) in zip(results, trained, strict=True):
            timings = server.latencies_ms(model, requests)
            result["latency_ms_p50"] = round(statistics.median(timings), 1)
    finally:
        server.stop()
    summary = {
        "base_model": spec.name,
        "method": spec.method,
        "train_config": {**config.__dict__, "epochs": epochs, "learning_rate": learning_rate},
        "load_average": os.getloadavg()[0],
        "tasks": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    table = Table(title=f"Interns on {spec.name} (SGD, held-out traces)")
    columns = (
        "task",
        "exact",
        "exact w/o dates",
        "args",
        "values in prompt",
        "kept",
        "exact on kept",
        "train s",
        "Triton p50 ms",
    )
    for column in columns:
        table.add_column(column)
    for r in results:
        table.add_row(
            r["task"],
            f"{r['exact_match']:.3f}",
            f"{r['exact_match_without_dates']:.3f}",
            f"{r['argument_accuracy']:.3f}",
            f"{r['values_in_prompt']:.2f}",
            f"{r['coverage']:.2f}",
            f"{r['served_exact_match']:.3f}",
            f"{r['train_seconds']:.0f}",
            f"{r['latency_ms_p50']:.0f}",
        )
    console.print(table)
    console.print(
        "exact: every held-out call answered by the intern; kept: the share it answers at"
        f" its calibrated confidence threshold (target {settings.gate.target_precision:.2f},"
        " cross-fitted), exact on kept: right among those; dates compared exactly; values in"
        " prompt: calls whose every copied value (not a date, time, number or boolean)"
        " stands in the intern's prompt"
    )
    console.print(f"written {out}")
    if workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
