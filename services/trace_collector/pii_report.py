"""How well and how fast the collector removes PII: `python -m interns.trace_collector.pii_report`.

Measures, and prints and writes as JSON (`--out`):

- recall per kind on the labelled corpus (`pii_corpus`: planted values of every kind, in
  sentences and in tool-call arguments), and the corpus's negatives that were touched;
- what redaction does to a real workload with no planted PII, SGD: every redaction by
  kind with examples. SGD holds real businesses' phone numbers (in tool results and
  replies); a phone redaction of one of them (in a `phone_number` field, or after the word
  "phone") is correct, anything else is a false positive;
- the CPU time per trace, on SGD's traces (whole conversations with tool results) and on
  short ones (a message, a reply and a tool call).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import phonenumbers
import typer
from rich.console import Console
from rich.table import Table

from interns.common.events import TraceRecorded
from interns.trace_collector import redact
from interns.trace_collector.pii_corpus import SEED, VALUES_PER_KIND, negatives, positives, score
from interns.trace_collector.redact import KINDS, PHONE, Redactor, trace_texts

DEFAULT_WORKLOAD = Path("sgd") / "sgd_service_calls_dev.jsonl"
# Any key will do for measuring: placeholders are not compared across runs.
REPORT_KEY = b"pii-report"
TENANT = "sgd"

app = typer.Typer(add_completion=False)


def sgd_traces(path: Path) -> list[TraceRecorded]:
    """One trace per SGD record: the conversation so far (with tools' results) as the
    request; the reference tool call and the reply that follows it as the response."""
    traces = []
    with path.open() as lines:
        for number, line in enumerate(lines):
            record = json.loads(line)
            call = {
                "id": f"call_{number}",
                "type": "function",
                "function": {
                    "name": record["reference"]["name"],
                    "arguments": json.dumps(record["reference"]["arguments"]),
                },
            }
            message = {
                "role": "assistant",
                "content": record.get("reference_reply") or None,
                "tool_calls": [call],
            }
            traces.append(
                TraceRecorded.model_validate(
                    {
                        "trace_id": record.get("id", str(number)),
                        "tenant_id": TENANT,
                        "session_id": record.get("dialogue_id", ""),
                        "source": str(path),
                        "request": {"messages": record["messages"]},
                        "response": {"message": message},
                    }
                )
            )
    return traces


def _phone_fields(value: Any) -> Iterable[str]:
    """The values of `phone_number` fields anywhere in a JSON value."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "phone_number" and isinstance(child, str):
                yield child
            else:
                yield from _phone_fields(child)
    elif isinstance(value, list):
        for child in value:
            yield from _phone_fields(child)


def _known_phones(traces: list[TraceRecorded]) -> set[str]:
    """SGD's own phone numbers: the values of its `phone_number` fields."""
    known: set[str] = set()
    for trace in traces:
        for text in trace_texts(trace):
            if text.startswith(("{", "[")):
                try:
                    known.update(_phone_fields(json.loads(text)))
                except ValueError:
                    continue
    return known


def _shape(text: str) -> str:
    return re.sub(r"\d", "9", text)


def measure_sgd(redactor: Redactor, traces: list[TraceRecorded]) -> dict:
    """Every redaction SGD's texts get, judged: a phone number that SGD has in a
    `phone_number` field, or that follows the word "phone", is a correct one."""
    known = _known_phones(traces)
    known_numbers = {f.value for phone in known for f in redactor.find(phone) if f.kind == PHONE}
    redactions: Counter[str] = Counter()
    values: dict[str, Counter[str]] = defaultdict(Counter)
    false_positives: Counter[str] = Counter()
    traces_touched = 0
    for trace in traces:
        touched = False
        for text in trace_texts(trace):
            for finding in redactor.find(text):
                found = text[finding.start : finding.end]
                redactions[finding.kind] += 1
                values[finding.kind][found] += 1
                touched = True
                said_phone = "phone" in text[max(0, finding.start - 40) : finding.start].lower()
                if not (finding.kind == PHONE and (finding.value in known_numbers or said_phone)):
                    false_positives[f"{finding.kind}: {found}"] += 1
        traces_touched += touched
    field_missed: Counter[str] = Counter()
    for phone in known:
        spans = redactor.find(phone)
        if not any(f.kind == PHONE and f.start == 0 and f.end == len(phone) for f in spans):
            field_missed[_shape(phone)] += 1
    chars = sum(len(text) for trace in traces for text in trace_texts(trace))
    return {
        "traces": len(traces),
        "chars_per_trace": round(chars / max(1, len(traces))),
        "traces_with_redactions": traces_touched,
        "redactions": {kind: redactions[kind] for kind in KINDS},
        "distinct_values": {kind: len(values[kind]) for kind in KINDS},
        "examples": {kind: values[kind].most_common(8) for kind in KINDS if values[kind]},
        "phone_numbers_in_sgd_fields": len(known),
        "phone_numbers_in_sgd_fields_redacted": len(known) - sum(field_missed.values()),
        "phone_numbers_missed_by_shape": dict(field_missed.most_common()),
        "false_positives": sum(false_positives.values()),
        "false_positive_values": false_positives.most_common(30),
    }


def _cpu_us_per_item(call: Callable[[Any], Any], items: list, rounds: int = 3) -> float:
    """CPU time per item (the best of `rounds`: other processes share these cores)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for item in items:
            call(item)
        best = min(best, time.process_time() - started)
    return round(best / max(1, len(items)) * 1e6, 1)


def measure_speed(redactor: Redactor, traces: list[TraceRecorded]) -> dict:
    """CPU time of `redact_trace` per trace, whole SGD traces and short ones."""
    short = [
        trace.model_copy(
            update={
                "request": trace.request.model_copy(
                    update={"messages": trace.request.messages[-1:]}
                )
            }
        )
        for trace in traces
    ]
    warm = _cpu_us_per_item(redactor.redact_trace, traces)
    redact._phone_e164.cache_clear()
    redactor.placeholder.cache_clear()
    cold = _cpu_us_per_item(redactor.redact_trace, traces, rounds=1)
    short_us = _cpu_us_per_item(redactor.redact_trace, short)

    def chars(items: list[TraceRecorded]) -> int:
        return round(sum(len(t) for i in items for t in trace_texts(i)) / max(1, len(items)))

    return {
        "sgd_trace_chars": chars(traces),
        "sgd_trace_us": warm,
        "sgd_trace_us_cold_caches": cold,
        "short_trace_chars": chars(short),
        "short_trace_us": short_us,
        "sgd_traces_per_cpu_second": round(1e6 / warm) if warm else None,
    }


def measure_corpus(redactor: Redactor, seed: int, per_kind: int) -> dict:
    samples = positives(seed, per_kind)
    negative_texts = negatives()
    result = score(redactor, samples, negative_texts)
    return {
        "seed": seed,
        "samples": len(samples),
        "samples_in_tool_arguments": sum(sample.tool_arguments for sample in samples),
        "kinds": {
            kind: {
                "planted": result.planted[kind],
                "removed": result.removed[kind],
                "recall": round(result.recall(kind), 4),
                "removed_as_its_kind": result.removed_as_kind[kind],
            }
            for kind in KINDS
        },
        "overall_recall": round(result.recall(), 4),
        "missed": [{"kind": k, "value": v, "text": t} for k, v, t in result.missed[:20]],
        "negatives": len(negative_texts),
        "negatives_redacted": [{"text": t, "redacted": f} for t, f in result.false_positives],
    }


def _print(console: Console, report: dict) -> None:
    corpus = report["corpus"]
    table = Table(title=f"Recall on the labelled corpus ({corpus['samples']} samples)")
    for column in ("kind", "planted", "removed", "recall", "as its kind"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, figures in corpus["kinds"].items():
        table.add_row(
            kind,
            str(figures["planted"]),
            str(figures["removed"]),
            f"{figures['recall']:.2%}",
            str(figures["removed_as_its_kind"]),
        )
    table.add_row("all", "", "", f"{corpus['overall_recall']:.2%}", "")
    console.print(table)
    console.print(
        f"negatives redacted: {len(corpus['negatives_redacted'])} of {corpus['negatives']}"
    )
    sgd = report["sgd"]
    table = Table(title=f"SGD ({sgd['traces']} traces, {sgd['chars_per_trace']} chars each)")
    for column in ("kind", "redactions", "distinct", "examples"):
        table.add_column(column)
    for kind in KINDS:
        examples = ", ".join(value for value, _ in sgd["examples"].get(kind, [])[:4])
        table.add_row(
            kind, str(sgd["redactions"][kind]), str(sgd["distinct_values"][kind]), examples
        )
    console.print(table)
    console.print(
        f"SGD false positives (redactions other than SGD's own phone numbers): "
        f"{sgd['false_positives']}"
    )
    console.print(
        f"SGD phone numbers redacted: {sgd['phone_numbers_in_sgd_fields_redacted']} of "
        f"{sgd['phone_numbers_in_sgd_fields']}; missed by shape: "
        f"{sgd['phone_numbers_missed_by_shape']}"
    )
    speed = report["speed"]
    console.print(
        f"CPU per trace: {speed['sgd_trace_us']} us for SGD traces "
        f"({speed['sgd_trace_chars']} chars; {speed['sgd_trace_us_cold_caches']} us with cold "
        f"caches), {speed['short_trace_us']} us for short ones "
        f"({speed['short_trace_chars']} chars)"
    )


@app.command()
def main(
    out: Path = typer.Option(Path("bench-results/pii.json"), help="Where to write the JSON"),
    workload: Path = typer.Option(
        None, help="SGD workload file; default: sgd/… under INTERNS_WORKLOADS_DIR"
    ),
    seed: int = typer.Option(SEED, help="Seed of the labelled corpus"),
    per_kind: int = typer.Option(VALUES_PER_KIND, min=1, help="Planted values per kind"),
) -> None:
    """Recall per kind on the labelled corpus, redactions on SGD, CPU per trace."""
    if workload is None:
        workload = Path(os.environ.get("INTERNS_WORKLOADS_DIR", "../shared/workloads"))
        workload = workload / DEFAULT_WORKLOAD
    if not workload.is_file():
        raise typer.BadParameter(f"no such file: {workload}", param_hint="--workload")
    redactor = Redactor(REPORT_KEY)
    traces = sgd_traces(workload)
    report = {
        "corpus": measure_corpus(redactor, seed, per_kind),
        "sgd": {"workload": str(workload), **measure_sgd(redactor, traces)},
        "speed": measure_speed(redactor, traces),
        "versions": {
            "phonenumbers": phonenumbers.__version__,
            "python-stdnum": version("python-stdnum"),
        },
    }
    _print(Console(), report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    Console().print(f"wrote {out}")


if __name__ == "__main__":
    app()
