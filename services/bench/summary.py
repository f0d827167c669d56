"""One table of every benchmark's headline figures: reads `bench-results/*.json` (each
benchmark's own file), writes `bench-results/summary.md` and prints the same with rich.

Each benchmark writes its own shape of file; `HEADLINES` says which figures of each one
matter, and its `goals` (a list of {name, figure, target, passed}, or {name: passed}) are
taken as they are. A file of an unknown benchmark gets its top-level numbers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

Row = tuple[str, str, str, str, str]  # benchmark, figure, value, target, verdict


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _get(data: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _picked(*paths: str) -> Callable[[dict[str, Any]], list[tuple[str, Any]]]:
    return lambda data: [(path, _get(data, path)) for path in paths if _get(data, path) is not None]


def _trainer(data: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = []
    for task in data.get("tasks", []):
        name = task.get("task", "?")
        rows.append((f"{name} exact match", task.get("exact_match")))
        rows.append((f"{name} exact match w/o dates", task.get("exact_match_without_dates")))
        rows.append((f"{name} train s", task.get("train_seconds")))
        rows.append((f"{name} Triton p50 ms", task.get("latency_ms_p50")))
    return rows


HEADLINES: dict[str, Callable[[dict[str, Any]], list[tuple[str, Any]]]] = {
    "gateway": _picked("added_p50_ms", "added_p99_ms", "max_rps", "litellm_max_rps"),
    "collector": _picked(
        "sqlite_traces_per_s", "postgres_traces_per_s", "sqlite_collector_cpu_us_per_trace",
        "lost", "duplicated",
    ),
    "miner": _picked(
        "seconds_100k", "seconds_incremental_10k", "tasks", "ami_service", "ami_function",
        "matcher_agreement_mean",
    ),
    "pii": _picked(
        "corpus.overall_recall", "corpus.negatives_redacted", "speed.sgd_trace_us",
        "speed.sgd_traces_per_cpu_second",
    ),
    "trainer": _trainer,
    "rollout": _picked("requests_per_s", "failed_requests", "swap_seconds", "rollback_seconds"),
    "soak": _picked("requests", "failed_calls", "lost", "duplicates", "latency_ms_p99"),
}  # fmt: skip


def _goal_rows(name: str, goals: Any) -> list[Row]:
    rows: list[Row] = []
    if isinstance(goals, dict):
        for goal, passed in goals.items():
            rows.append((name, goal, "-", "goal", "PASS" if passed else "FAIL"))
    elif isinstance(goals, list):
        for goal in goals:
            if isinstance(goal, dict) and "passed" in goal:
                rows.append(
                    (
                        name,
                        str(goal.get("name") or goal.get("goal", "?")),
                        _value(goal.get("figure", goal.get("measured", "-"))),
                        str(goal.get("target", "goal")),
                        "PASS" if goal["passed"] else "FAIL",
                    )
                )
    return rows


def summarize(name: str, data: dict[str, Any]) -> list[Row]:
    """The rows of one benchmark's file: its goals first, then its headline figures."""
    rows = _goal_rows(name, data.get("goals"))
    headline = HEADLINES.get(name)
    if headline is not None:
        figures = headline(data)
    else:
        figures = [(k, v) for k, v in data.items() if isinstance(v, int | float)][:6]
    rows += [(name, figure, _value(value), "", "") for figure, value in figures]
    if not rows:
        rows.append((name, "(no figure found)", "", "", ""))
    return rows


def collect(results: Path) -> tuple[list[Row], list[str]]:
    """Rows of every `*.json` in `results` (quick smoke runs left out), and the files read
    with their dates."""
    rows: list[Row] = []
    sources = []
    for path in sorted(results.glob("*.json")):
        name = path.stem
        if name.endswith("-quick"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            rows.append((name, "(unreadable)", type(error).__name__, "", ""))
            continue
        when = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        sources.append(f"{path.name} ({when})")
        rows += summarize(name, data if isinstance(data, dict) else {})
    return rows, sources


def markdown(rows: list[Row], sources: list[str]) -> str:
    lines = [
        "# Benchmark summary",
        "",
        "From " + ", ".join(sources) + "." if sources else "No benchmark result found.",
        "",
        "| benchmark | figure | value | target | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("bench-results"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/summary.md"))
    args = parser.parse_args(argv)
    rows, sources = collect(args.results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, sources))
    table = Table("benchmark", "figure", "value", "target", "verdict", title="benchmarks")
    for row in rows:
        verdict = {"PASS": "[green]PASS[/]", "FAIL": "[red]FAIL[/]"}.get(row[4], row[4])
        table.add_row(*row[:4], verdict)
    console = Console()
    console.print(table)
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
