"""The compose stack's monitoring: Prometheus scrapes every service's ops port, and the
flywheel dashboard and the Prometheus rules ask only for metrics the services export
(`interns.common.metrics`), with labels those metrics have. A wrong name would show an
empty panel, not an error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from interns.common import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "flywheel.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
COMPOSE = ROOT / "docker-compose.yml"

# What the dashboard is for: each must be on some panel.
FLYWHEEL = {
    "share of traffic on interns": "interns_routed_calls_total",
    "intern share by route": "interns_route_share",
    "agreement": "interns_agreement",
    "fallbacks": "interns_fallbacks_total",
    "latency": "interns:rpc_latency_seconds:p99_5m",
    "consumer lag": "interns:consumer_lag:sum",
    "training progress": "interns_training_progress",
}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SELECTOR = re.compile(r"\b(interns_[a-z0-9_]+)\{([^}]*)\}")
STRINGS = re.compile(r'"[^"]*"|\'[^\']*\'|\$\w+')
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def exported() -> dict[str, list[str]]:
    """Every series name a scrape of an Interns service can show, with its labels."""
    names: dict[str, list[str]] = {}
    for value in vars(metrics).values():
        name, kind = getattr(value, "_name", None), getattr(value, "_type", None)
        if not (isinstance(name, str) and name.startswith("interns_") and kind):
            continue
        labels = list(value._labelnames)
        suffixes = {
            "counter": ["_total"],
            "gauge": [""],
            "histogram": ["_bucket", "_sum", "_count"],
        }[kind]
        for suffix in suffixes:
            names[name + suffix] = labels + (["le"] if suffix == "_bucket" else [])
    return names


def rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def all_exprs() -> list[tuple[str, str]]:
    from_rules = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules()]
    return dashboard_exprs() + from_rules


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def scrape_targets() -> set[str]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    return {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }


@pytest.mark.parametrize(("where", "expr"), all_exprs())
def test_every_metric_asked_for_is_exported_with_those_labels(where, expr):
    known = exported()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    # Names outside string literals and Grafana variables.
    for name in NAME.findall(STRINGS.sub("", expr)):
        if name.startswith("intern") and ":" not in name:
            assert name in known, f"{where}: {name} is not a metric of interns.common.metrics"
        elif name.startswith("intern"):
            assert name in recorded, f"{where}: {name} is no recording rule of {RULES.name}"
    for name, matchers in SELECTOR.findall(expr):
        for label in MATCHER.findall(matchers):
            assert label in known[name], f"{where}: {name} has no label {label!r}"


@pytest.mark.parametrize("what", sorted(FLYWHEEL))
def test_the_dashboard_shows_every_part_of_the_flywheel(what):
    assert any(FLYWHEEL[what] in expr for _, expr in dashboard_exprs()), what


def test_every_ops_port_of_the_compose_stack_is_scraped():
    targets = scrape_targets()
    services = compose()["services"]
    ops = {
        f"{name}:{value}"
        for name, service in services.items()
        for key, value in (service.get("environment") or {}).items()
        if key.endswith("_OPS_PORT")
    }
    assert len(ops) >= 6, ops  # gateway, router, trainer, collector, miner, deployer
    assert ops <= targets, f"not scraped: {sorted(ops - targets)}"
    expert_port = services["expert"]["environment"]["EXPERT_PORT"]
    triton_port = next(
        arg.split("=", 1)[1]
        for arg in services["triton"]["command"]
        if arg.startswith("--metrics-port")
    )
    assert {f"expert:{expert_port}", f"triton:{triton_port}"} <= targets


def test_every_scrape_target_is_a_compose_service():
    services = compose()["services"]
    for target in scrape_targets():
        assert target.split(":")[0] in services, f"{target} is no service of {COMPOSE.name}"


def test_grafana_and_prometheus_mount_files_that_exist():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                # Docker would create a missing source as an empty folder: a silent failure.
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    rule_file = yaml.safe_load(PROMETHEUS.read_text())["rule_files"][0]
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert rule_file in mounted


def test_the_dashboard_reads_the_provisioned_datasource_from_the_provisioned_folder():
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "interns.yml").read_text()
    )["providers"][0]
    board = json.loads(DASHBOARD.read_text())
    uids = {
        target["datasource"]["uid"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {datasource["uid"]}
    grafana_mounts = {
        v.split(":")[0]: v.split(":")[1] for v in compose()["services"]["grafana"]["volumes"]
    }
    assert grafana_mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert datasource["url"].startswith("http://prometheus:")


def test_kubernetes_has_the_same_rules_as_the_compose_stack():
    rule = yaml.safe_load(
        (ROOT / "k8s" / "components" / "prometheus-operator" / "prometheus-rule.yaml").read_text()
    )
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
