"""Benchmark of the miner: 100,000 stored traces mined from scratch, embeddings included,
then 10,000 new ones mined incrementally; and how the mined tasks line up with the
workload's own labels.

Traces: the SGD workload's 6,027 records, varied so that 110,000 of them look like real
traffic: each copy of a record gets its own trace id, session (`<dialogue>-v<copy>`), one
of three tenants, and new values for its tool call's string arguments (a city, a
restaurant, a time, ...), drawn from the values the workload uses for the same argument
and replaced in the conversation and in the expert's answer alike. They are written to a
SQLite file as the trace-collector writes them (`trace_of`, then `write_traces`: the
collector's own rows, in batches), without PII redaction (SGD holds no personal data; the
collector benchmark measures redaction).

Measures, in ROUNDS fresh processes (the embedding model loads in each, and counts):
the wall and CPU seconds of `mine_new_traces` + `upsert_tasks` over the first 100,000
traces, then of the same after 10,000 more are stored; medians are reported. Then, on
the mined state: service purity of the tasks with >= 1% of the traffic, AMI with the
service set and with the function; how many texts were embedded; the serve-time matcher's
cost per call and its cross-validated agreement with the embedding clusters; the
router's decision cost for a signature-only and for a split task. Also prints the scores
on the SGD workload itself (`interns.miner.report`).

    python -m interns.bench.miner --out bench-results/miner.json [--rounds 3]
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select

from interns.cli.importer import trace_of
from interns.common.db import Trace, make_engine, upgrade_database
from interns.common.events import RolloutChanged
from interns.common.signature import request_signature
from interns.expert.replay import WorkloadRecord, load_workload

DEFAULT_WORKLOAD = Path("/work/shared/workloads/sgd/sgd_service_calls_dev.jsonl")
FIRST, EXTRA = 100_000, 10_000
GOAL_FIRST_S, GOAL_EXTRA_S, GOAL_PURITY = 60.0, 10.0, 0.9
TENANTS = ("acme", "globex", "initech")
WRITE_BATCH = 2_000
PRICE_PER_CHAR = 2e-7  # about $0.8 per million prompt tokens at 4 characters a token
TIMING_CALLS = 20_000

# --- the traces -------------------------------------------------------------------------


def _argument_pools(records: list[WorkloadRecord]) -> dict[str, list[str]]:
    pools: dict[str, set[str]] = {}
    for record in records:
        for call in record.answer.get("tool_calls") or []:
            for name, value in json.loads(call["function"]["arguments"] or "{}").items():
                if isinstance(value, str) and len(value) >= 2:
                    pools.setdefault(name, set()).add(value)
    return {name: sorted(values) for name, values in pools.items()}


def vary(record: WorkloadRecord, rng: random.Random, pools: dict[str, list[str]]) -> dict:
    """The record's request and answer with new values for its call's string arguments
    that the conversation mentions (whole words, everywhere they appear)."""
    request = json.loads(json.dumps(record.request))
    answer = json.loads(json.dumps(record.answer))
    for call in answer.get("tool_calls") or []:
        arguments = json.loads(call["function"]["arguments"] or "{}")
        for name, value in arguments.items():
            pool = pools.get(name)
            if not isinstance(value, str) or len(value) < 2 or not pool:
                continue
            mentioned = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)")
            new_value = rng.choice(pool)
            for message in request["messages"]:
                if isinstance(message.get("content"), str):
                    message["content"] = mentioned.sub(new_value, message["content"])
            arguments[name] = new_value
        call["function"]["arguments"] = json.dumps(arguments)
    return {"request": request, "answer": answer}


def store_traces(
    engine, records: list[WorkloadRecord], count: int, first_number: int, seed: int
) -> dict[str, tuple[str, str]]:
    """Writes `count` varied traces; returns each trace id's (service set, function)."""
    from interns.trace_collector.store import write_traces

    rng = random.Random(seed)
    pools = _argument_pools(records)
    labels = {}
    batch = []
    now = datetime.now(UTC)
    for number in range(first_number, first_number + count):
        record = records[number % len(records)]
        copy = number // len(records)
        varied = vary(record, rng, pools) if copy else record.model_dump()
        metadata = {**record.metadata, "session_id": f"{record.metadata['session_id']}-v{copy}"}
        source = record.model_copy(
            update={"request": varied["request"], "answer": varied["answer"], "metadata": metadata}
        )
        trace = trace_of(source, TENANTS[number % len(TENANTS)], "sgd-bench", now)
        trace_id = f"bench-{number:07d}"
        cost = PRICE_PER_CHAR * len(json.dumps(varied["request"]["messages"]))
        batch.append(trace.model_copy(update={"trace_id": trace_id, "cost_usd": cost}))
        labels[trace_id] = (
            "+".join(sorted(record.metadata.get("services") or [])),
            str(record.metadata.get("task_label")),
        )
        if len(batch) >= WRITE_BATCH:
            write_traces(engine, batch)
            batch = []
    write_traces(engine, batch)
    return labels


# --- one round, in its own process ------------------------------------------------------


def _timed(action) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _per_call_us(action, calls: list) -> float:
    started = time.perf_counter()
    for call in calls:
        action(call)
    return (time.perf_counter() - started) / len(calls) * 1e6


def _router_costs(state, engine) -> dict:
    """Microseconds per routing decision, as the router makes it, for a call of a
    signature-only task and of a split one (routes set for every task)."""
    from interns.common.events import TaskChanged
    from interns.miner.mining import matcher_of
    from interns.router.routing import RoutingTable

    table = RoutingTable()
    for task in state.tasks.values():
        table.apply(
            RolloutChanged(
                task_id=task.task_id,
                signature=task.signature,
                target=f"intern-{task.task_id}",
                mode="full",
                changed_by="controller",
            )
        )
        table.apply_task(
            TaskChanged(
                task_id=task.task_id,
                change="updated",
                signature=task.signature,
                matcher=matcher_of(state, task.task_id),
            )
        )
    with engine.connect() as connection:
        requests = [r for (r,) in connection.execute(select(Trace.request).limit(TIMING_CALLS))]
    split = [(request_signature(r), r) for r in requests if request_signature(r) in table.matchers]
    whole = [
        (request_signature(r), r) for r in requests if request_signature(r) not in table.matchers
    ]

    def decide(call) -> None:
        table.decide(call[0], "acme", "s1", "expert", request=call[1])

    return {
        "router_decide_us_signature_only": round(_per_call_us(decide, whole), 2) if whole else None,
        "router_decide_us_split": round(_per_call_us(decide, split), 2) if split else None,
    }


def one_round(database: Path, labels_file: Path, sample_size: int = 96) -> None:
    """Mines the first traces, stores the extra ones, mines again; prints JSON."""
    from interns.common.task_matcher import request_text
    from interns.miner.mining import MiningState, mine_new_traces, upsert_tasks
    from interns.miner.report import scores
    from interns.miner.subclusters import minilm_embedder

    engine = make_engine(f"sqlite:///{database}")
    state = MiningState(embed=minilm_embedder(), sample_size=sample_size)

    def mine() -> None:
        mine_new_traces(engine, state)
        upsert_tasks(engine, state)

    _, first_s, first_cpu = _timed(mine)
    first_embedded, first_total = state.embedded, state.total
    extra = json.loads((database.parent / "extra.json").read_text())
    records = [WorkloadRecord.model_validate(r) for r in extra["records"]]
    labels = json.loads(labels_file.read_text())
    labels.update(store_traces(engine, records, extra["count"], extra["first"], seed=2))
    _, extra_s, extra_cpu = _timed(mine)

    with engine.connect() as connection:
        rows = connection.execute(select(Trace.trace_id, Trace.request)).all()
    assigned = [state.task_of(request) for _, request in rows]
    services = [labels[trace_id][0] for trace_id, _ in rows]
    functions = [labels[trace_id][1] for trace_id, _ in rows]
    decisions = [g.decision for g in state.groups.values() if g.decision]
    split = [g for g in state.groups.values() if g.matcher is not None]
    texts = [request_text(request) for _, request in rows[:TIMING_CALLS]]
    matcher_calls = [
        (g.matcher, t) for g in split for t in texts[: TIMING_CALLS // max(len(split), 1)]
    ]
    result = {
        "traces_first": first_total,
        "traces_extra": state.total - first_total,
        "seconds_first": round(first_s, 2),
        "cpu_seconds_first": round(first_cpu, 2),
        "seconds_extra": round(extra_s, 2),
        "cpu_seconds_extra": round(extra_cpu, 2),
        "embedded_first": first_embedded,
        "embedded_extra": state.embedded - first_embedded,
        "signatures": len(state.groups),
        "signatures_split": len(split),
        "signatures_decided": len(decisions),
        "matcher_agreement_mean": round(
            statistics.mean(g.decision.agreement for g in split if g.decision), 4
        )
        if split
        else None,
        "matcher_agreement_min": round(min(g.decision.agreement for g in split if g.decision), 4)
        if split
        else None,
        "matcher_us_per_call": round(_per_call_us(lambda c: c[0].match(c[1]), matcher_calls), 2)
        if matcher_calls
        else None,
        **_router_costs(state, engine),
        **scores(assigned, services, functions),
    }
    print(json.dumps(result))


# --- the benchmark ----------------------------------------------------------------------


def main(
    out: Path = typer.Option(Path("bench-results/miner.json"), help="Where to write the JSON"),
    workload: Path = typer.Option(DEFAULT_WORKLOAD, help="The SGD workload file"),
    rounds: int = typer.Option(3, min=1, help="Fresh processes, each mining from scratch"),
    sample_size: int = typer.Option(96, min=20, help="Distinct messages embedded per signature"),
) -> None:
    """Mines 100,000 traces, then 10,000 more; writes the figures and the goals."""
    from interns.miner.report import measure
    from interns.miner.subclusters import minilm_embedder

    records = load_workload(workload).records
    folder = Path(tempfile.mkdtemp(prefix="bench-miner-"))
    try:
        source = folder / "traces.db"
        upgrade_database(f"sqlite:///{source}")
        print(f"storing {FIRST} traces in {source} ...", file=sys.stderr)
        started = time.perf_counter()
        labels = store_traces(make_engine(f"sqlite:///{source}"), records, FIRST, 0, seed=1)
        print(f"stored in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        (folder / "labels.json").write_text(json.dumps(labels))
        (folder / "extra.json").write_text(
            json.dumps(
                {
                    "records": [r.model_dump() for r in records],
                    "count": EXTRA,
                    "first": FIRST,
                }
            )
        )
        results = []
        for number in range(rounds):
            database = folder / f"round-{number}.db"
            shutil.copy(source, database)
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "interns.bench.miner",
                    "round",
                    str(database),
                    str(folder / "labels.json"),
                    "--sample-size",
                    str(sample_size),
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
            database.unlink()
            print(f"round {number + 1}: {results[-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def median(name: str) -> float:
        return round(statistics.median(r[name] for r in results), 2)

    last = results[-1]
    figures = {
        "seconds_100k": median("seconds_first"),
        "seconds_incremental_10k": median("seconds_extra"),
        "cpu_seconds_100k": median("cpu_seconds_first"),
        "cpu_seconds_incremental_10k": median("cpu_seconds_extra"),
        "rounds_seconds_100k": [r["seconds_first"] for r in results],
        "rounds_seconds_incremental_10k": [r["seconds_extra"] for r in results],
        **{k: v for k, v in last.items() if not k.startswith(("seconds", "cpu_seconds"))},
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        "sample_size": sample_size,
    }
    goals = {
        "100k_in_60s": figures["seconds_100k"] <= GOAL_FIRST_S,
        "incremental_10k_in_10s": figures["seconds_incremental_10k"] <= GOAL_EXTRA_S,
        "min_service_purity_0.9": figures["min_service_purity"] >= GOAL_PURITY,
    }
    sgd = measure(workload, minilm_embedder())
    result = {**figures, "goals": goals, "sgd_workload": sgd}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["round"]:
        del sys.argv[1]
        typer.run(one_round)
    else:
        typer.run(main)
