"""How well signature mining recovers a workload's known tasks.

Mines the SGD workload in memory and compares the mined tasks with the workload's labels:
the service set of each record and its function (`task_label`); then the same after
splitting each signature group by embeddings (`interns.miner.subclusters`). Run:

    python -m interns.miner.report --out bench-results/miner.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from sklearn.metrics import adjusted_mutual_info_score

from interns.expert.replay import load_workload
from interns.miner.mining import MiningState, answer_shape
from interns.miner.subclusters import last_user_text, minilm_embedder, split_group

DEFAULT_WORKLOAD = Path("/work/shared/workloads/sgd/sgd_service_calls_dev.jsonl")
MIN_SHARE = 0.01


def _purity(assigned: list[str], truth: list[str], min_share: float) -> dict[str, float]:
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


def _scores(assigned: list[str], services: list[str], functions: list[str]) -> dict:
    service_purity = _purity(assigned, services, MIN_SHARE)
    function_purity = _purity(assigned, functions, MIN_SHARE)
    return {
        "tasks": len(set(assigned)),
        "tasks_min_1pct": len(service_purity),
        "min_service_purity": round(min(service_purity.values()), 4),
        "mean_function_purity": round(sum(function_purity.values()) / len(function_purity), 4),
        "min_function_purity": round(min(function_purity.values()), 4),
        "ami_service": round(adjusted_mutual_info_score(services, assigned), 4),
        "ami_function": round(adjusted_mutual_info_score(functions, assigned), 4),
    }


def _subclusters(records, responses, assigned: list[str]) -> tuple[list[str], float]:
    embed = minilm_embedder()
    started = time.perf_counter()
    groups: dict[str, list[int]] = defaultdict(list)
    for index, task_id in enumerate(assigned):
        groups[task_id].append(index)
    split = list(assigned)
    for task_id, indices in groups.items():
        texts = [last_user_text(records[i].request) for i in indices]
        shapes = [answer_shape(responses[i])[1] for i in indices]
        for index, subtask in zip(indices, split_group(task_id, texts, shapes, embed), strict=True):
            split[index] = subtask
    return split, time.perf_counter() - started


def measure(workload_path: Path, subclusters: bool = True) -> dict:
    records = list(load_workload(workload_path))
    responses = [{"choices": [{"message": r.answer}]} for r in records]
    state = MiningState()
    started = time.perf_counter()
    assigned = [
        state.add(r.request, response) for r, response in zip(records, responses, strict=True)
    ]
    seconds = time.perf_counter() - started
    services = ["+".join(sorted(r.metadata.get("services") or [])) for r in records]
    functions = [str(r.metadata.get("task_label")) for r in records]
    result = {
        "workload": str(workload_path),
        "traces": len(records),
        "service_sets": len(set(services)),
        "functions": len(set(functions)),
        "method": "structural signature (what the miner service and the router use)",
        **_scores(assigned, services, functions),
        "seconds_to_mine": round(seconds, 3),
    }
    if subclusters:
        split, split_seconds = _subclusters(records, responses, assigned)
        result["subclusters"] = {
            "method": "signature, then k-means on all-MiniLM-L6-v2 embeddings of the last"
            " user message, k = answer shapes with >= 5% of the group (CPU)",
            **_scores(split, services, functions),
            "seconds_to_mine": round(seconds + split_seconds, 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, default=DEFAULT_WORKLOAD)
    parser.add_argument("--out", type=Path, default=Path("bench-results/miner.json"))
    parser.add_argument(
        "--no-subclusters", action="store_true", help="Skip the embedding sub-clusters"
    )
    args = parser.parse_args()
    result = measure(args.workload, subclusters=not args.no_subclusters)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
