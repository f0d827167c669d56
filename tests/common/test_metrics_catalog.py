"""The metrics catalog: docs/metrics.md and `interns.common.metrics` name the same metrics
with the same labels, each registered once, and no service declares metrics of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from interns.common import metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
LINE = re.compile(r"^- `(?P<name>interns_[a-z_]+)` \((?P<type>\w+)\) \{(?P<labels>[^}]*)\}: .+")

# What issue 9 asks every dashboard to be able to show, by documented name.
REQUIRED = {
    "requests": "interns_rpc_requests_total",
    "latency histogram": "interns_rpc_latency_seconds",
    "route share": "interns_route_share",
    "fallbacks": "interns_fallbacks_total",
    "agreement": "interns_agreement",
    "consumer lag": "interns_consumer_lag",
    "training progress": "interns_training_progress",
}


def documented() -> dict[str, tuple[str, list[str]]]:
    text = DOC.read_text()
    block = text.split("<!-- metrics:begin -->", 1)[1].split("<!-- metrics:end -->", 1)[0]
    found = {}
    for line in filter(None, (raw.strip() for raw in block.splitlines())):
        match = LINE.match(line)
        assert match, f"docs/metrics.md: line not in the catalog's shape: {line}"
        assert match["name"] not in found, f"{match['name']} documented twice"
        labels = [label.strip() for label in match["labels"].split(",") if label.strip()]
        found[match["name"]] = (match["type"], labels)
    return found


def declared() -> dict[str, tuple[str, list[str]]]:
    """The metrics `interns.common.metrics` declares, by the name a scrape shows."""
    found = {}
    for value in vars(metrics).values():
        name = getattr(value, "_name", None)
        kind = getattr(value, "_type", None)
        if isinstance(name, str) and name.startswith("interns_") and kind:
            exposed = f"{name}_total" if kind == "counter" else name
            found[exposed] = (kind, list(value._labelnames))
    return found


@pytest.mark.parametrize("what", sorted(REQUIRED))
def test_required_metric_is_documented_and_registered_once(what):
    name = REQUIRED[what]
    assert name in documented(), f"{what}: {name} missing from docs/metrics.md"
    base = name.removesuffix("_total")
    owners = [
        collector
        for collector in set(REGISTRY._names_to_collectors.values())
        if getattr(collector, "_name", None) == base
    ]
    assert len(owners) == 1, f"{name} registered {len(owners)} times"
    assert "service" in owners[0]._labelnames


def test_documentation_matches_the_declarations():
    assert documented() == declared()


def test_every_metric_is_an_interns_metric_with_a_service_label():
    for name, (_, labels) in declared().items():
        assert name.startswith("interns_")
        assert labels[0] == "service", f"{name}: first label is {labels[0]}, not service"


def test_no_service_declares_a_metric_outside_the_catalog():
    offenders = []
    for path in (ROOT / "services").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(("services/api/", "services/bench/")) or relative.endswith(
            "common/metrics.py"
        ):
            continue
        tree = ast.parse(path.read_text())
        imported = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
            for alias in node.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in imported & {"Counter", "Gauge", "Histogram", "Summary"}
            ):
                offenders.append(f"{relative}:{node.lineno}")
    assert not offenders, f"metrics declared outside interns.common.metrics: {offenders}"


def test_training_progress_reads_as_a_share_of_steps():
    metrics.record_training_progress("trainer", "task-progress", "running", 30, 120)
    gauge = metrics.TRAINING_PROGRESS.labels("trainer", "task-progress")
    assert gauge._value.get() == pytest.approx(0.25)
    metrics.record_training_progress("trainer", "task-progress", "succeeded", 100, 120)
    assert gauge._value.get() == 1.0
