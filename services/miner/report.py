"""How well mining recovers a workload's known tasks.

Mines the SGD workload in memory, as the miner service does (signatures, then the
embedding split of the signatures that hold several tasks), and compares the mined tasks
with the workload's labels: the service set of each record and its function
(`task_label`). Also gives the scores of signatures alone. Run:

    python -m interns.miner.report --out bench-results/miner-sgd.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from sklearn.metrics import adjusted_mutual_info_score

from interns.expert.replay import load_workload
from interns.miner.mining import SAMPLE_SIZE, MiningState
from interns.miner.subclusters import Embed, minilm_embedder

DEFAULT_WORKLOAD = Path("/work/shared/workloads/sgd/sgd_service_calls_dev.jsonl")
MIN_SHARE = 0.01


def purity(assigned: list[str], truth: list[str], min_share: float) -> dict[str, float]:
    """Share of each task's traces that carry its most common true label, for the tasks
    with at least `min_share` of the traffic."""
    by_task: dict[str, Counter[str]] = defaultdict(Counter)
    for task_id, label in zip(assigned, truth, strict=True):
        by_task[task_id][label] += 1
    total = len(assigned)
    return {
        task_id: labels.most_common(1)[0][1] / labels.total()
        for task_id, labels in by_task.items()
        if labels.total() / total >= min_share
    }


def scores(assigned: list[str], services: list[str], functions: list[str]) -> dict:
    """Purity (tasks with >= MIN_SHARE of the traffic) and AMI against both labels."""
    service_purity = purity(assigned, services, MIN_SHARE)
    function_purity = purity(assigned, functions, MIN_SHARE)
    return {
        "tasks": len(set(assigned)),
        "tasks_min_1pct": len(service_purity),
        "min_service_purity": round(min(service_purity.values()), 4),
        "mean_function_purity": round(sum(function_purity.values()) / len(function_purity), 4),
        "min_function_purity": round(min(function_purity.values()), 4),
        "ami_service": round(adjusted_mutual_info_score(services, assigned), 4),
        "ami_function": round(adjusted_mutual_info_score(functions, assigned), 4),
    }


def measure(
    workload_path: Path, embed: Embed | None = None, sample_size: int = SAMPLE_SIZE
) -> dict:
    """Scores of signature mining and of the miner's split on the workload."""
    records = list(load_workload(workload_path))
    requests = [r.request for r in records]
    responses = [{"choices": [{"message": r.answer}]} for r in records]
    services = ["+".join(sorted(r.metadata.get("services") or [])) for r in records]
    functions = [str(r.metadata.get("task_label")) for r in records]
    signatures_only = MiningState()
    by_signature = [signatures_only.add(q, a) for q, a in zip(requests, responses, strict=True)]
    result = {
        "workload": str(workload_path),
        "traces": len(records),
        "service_sets": len(set(services)),
        "functions": len(set(functions)),
        "signatures_only": scores(by_signature, services, functions),
    }
    if embed is not None:
        state = MiningState(embed=embed, sample_size=sample_size)
        started = time.perf_counter()
        for request, response in zip(requests, responses, strict=True):
            state.add(request, response)
        state.refine()
        seconds = time.perf_counter() - started
        mined = [state.task_of(request) for request in requests]
        decisions = [g.decision for g in state.groups.values() if g.decision]
        split = [d for d in decisions if d.split]
        result["mined"] = {
            "method": "signature, then split where interns.miner.subclusters decides"
            " (all-MiniLM-L6-v2 on a sample per signature, CPU); every trace assigned by"
            " the serve-time matcher",
            **scores(mined, services, functions),
            "signatures_split": f"{len(split)} of {len(decisions)} decided",
            "embedded_texts": state.embedded,
            "matcher_agreement_mean": round(sum(d.agreement for d in split) / len(split), 4)
            if split
            else None,
            "seconds_to_mine": round(seconds, 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, default=DEFAULT_WORKLOAD)
    parser.add_argument("--out", type=Path, default=Path("bench-results/miner-sgd.json"))
    parser.add_argument("--no-subclusters", action="store_true", help="Signatures only")
    parser.add_argument("--sample-size", type=int, default=SAMPLE_SIZE)
    args = parser.parse_args()
    embed = None if args.no_subclusters else minilm_embedder()
    result = measure(args.workload, embed, args.sample_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
