"""The project's rules on rendered Kubernetes manifests, beyond what the schemas check.

- hardened pods: non-root uid 10001, read-only root filesystem, no privilege escalation,
  every capability dropped; requests and limits; readiness and liveness probes on every
  container that serves a port (a queue worker serves none, and a probe of a busy
  solo-pool Celery worker would kill its job);
- settings: Interns containers read the ConfigMap `interns-config`; credentials come from
  the Secret `interns-secrets` only, and no Secret object is in the manifests;
- references: ServiceAccounts, PersistentVolumeClaims, Service selectors and target ports,
  PodDisruptionBudget and NetworkPolicy selectors all find what they name;
- scaling: every HorizontalPodAutoscaler or KEDA ScaledObject targets a Deployment, one
  autoscaler per Deployment, which then sets no `replicas` of its own; the collectors'
  ScaledObject reads the trace topic, the collector's consumer group and the ConfigMap's
  KAFKA_BOOTSTRAP_SERVERS;
- GPU: a container that requests `nvidia.com/gpu` runs on the GPU node pool (nodeSelector
  and a toleration of the `nvidia.com/gpu` taint);
- security: a default-deny ingress policy, a NetworkPolicy for every Deployment's pods;
  Triton's HTTP port (model control) open to the deploy controller only; the model
  repository mounted writable by the training workers only;
- Strimzi (when a Kafka resource is there): every topic of `interns.common.events` is a
  KafkaTopic, and KAFKA_BOOTSTRAP_SERVERS is that cluster's bootstrap Service.

Usage: python scripts/check_k8s_rules.py rendered NAME FILE   (one rendered kustomization)
       python scripts/check_k8s_rules.py files K8S_DIR         (raw files, no renderer)
Exits 1 and prints one line per problem when a rule is broken.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

UID = 10001
CONFIG_MAP = "interns-config"
SECRET = "interns-secrets"
INTERNS_IMAGES = {"interns", "interns-trainer"}
MODEL_REPOSITORY = "model-repository"
REPOSITORY_WRITERS = {"trainer-worker"}  # app.kubernetes.io/name of the pods that write
GPU = "nvidia.com/gpu"
NAME = "app.kubernetes.io/name"


def load(paths) -> list[dict]:
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            docs += [doc for doc in yaml.safe_load_all(handle) if doc]
    return docs


def is_builtin(doc: dict) -> bool:
    """A kind of Kubernetes itself (its schemas are known), not a custom resource."""
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def code_facts() -> dict | None:
    """Topic names and the collector's consumer group, from the code (None without it)."""
    try:
        import inspect

        from interns.common import events
        from interns.trace_collector.settings import CollectorSettings
    except ImportError:
        return None
    topics = {
        value.topic
        for value in vars(events).values()
        if inspect.isclass(value) and isinstance(getattr(value, "topic", None), str)
    }
    return {
        "topics": topics,
        "trace_topic": events.TraceRecorded.topic,
        "collector_group": CollectorSettings.model_fields["group_id"].default,
    }


def image_name(image: str) -> str:
    """`registry/path/interns:tag@digest` -> `interns`."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def selects(selector: dict, labels: dict) -> bool:
    match = (selector or {}).get("matchLabels", selector or {})
    return all(labels.get(k) == v for k, v in match.items())


class Checker:
    def __init__(self, docs: list[dict], where: str):
        self.docs, self.where, self.problems = docs, where, []
        self.kinds = {(d.get("kind"), d.get("metadata", {}).get("name")) for d in docs}
        self.deployments = {d["metadata"]["name"]: d for d in self.of("Deployment")}
        configs = [d for d in self.of("ConfigMap") if d["metadata"]["name"] == CONFIG_MAP]
        self.config = configs[0].get("data", {}) if configs else None

    def of(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.where}: {text}")

    def pods(self):
        """(deployment name, pod labels, pod spec) of every Deployment."""
        for name, deployment in self.deployments.items():
            template = deployment.get("spec", {}).get("template", {})
            yield name, template.get("metadata", {}).get("labels", {}), template.get("spec", {})

    def run(self) -> list[str]:
        if not self.deployments:
            self.problem("no Deployment")
        if self.of("Secret"):
            self.problem("a Secret object is in the manifests: create it in the cluster instead")
        if self.config is None:
            self.problem(f"ConfigMap {CONFIG_MAP} is not defined")
        for name, deployment in self.deployments.items():
            self.check_deployment(name, deployment)
        self.check_services()
        self.check_autoscalers()
        self.check_disruption_budgets()
        self.check_network_policies()
        self.check_model_repository()
        self.check_kafka()
        return self.problems

    # --- pods -----------------------------------------------------------------------------

    def check_deployment(self, name: str, deployment: dict) -> None:
        where = f"Deployment {name}"
        spec = deployment.get("spec", {})
        template = spec.get("template", {})
        labels = template.get("metadata", {}).get("labels", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        if not selector or not selects(selector, labels):
            self.problem(f"{where}: selector does not match the pod template's labels")
        pod = template.get("spec", {})
        account = pod.get("serviceAccountName")
        if not account or ("ServiceAccount", account) not in self.kinds:
            self.problem(f"{where}: serviceAccountName {account!r} is not defined")
        pod_security = pod.get("securityContext", {})
        for key, want in (("runAsNonRoot", True), ("runAsUser", UID)):
            if pod_security.get(key) != want:
                self.problem(f"{where}: pod securityContext.{key} must be {want!r}")
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and ("PersistentVolumeClaim", claim) not in self.kinds:
                self.problem(f"{where}: PersistentVolumeClaim {claim!r} is not defined")
        for container in pod.get("containers", []):
            self.check_container(f"{where} container {container.get('name')}", container, pod)

    def check_container(self, where: str, container: dict, pod: dict) -> None:
        security = container.get("securityContext", {})
        wanted = {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for key, want in wanted.items():
            if security.get(key) != want:
                self.problem(f"{where}: securityContext.{key} must be {want!r}")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            self.problem(f"{where}: securityContext.capabilities.drop must be [ALL]")
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(part, {}):
                    self.problem(f"{where}: resources.{part}.{resource} is missing")
        port_names = {port.get("name") for port in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            if container.get("ports") and probe not in container:
                self.problem(f"{where}: {probe} is missing")
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in port_names:
                self.problem(f"{where}: {probe} uses unknown port name {port!r}")
        if image_name(container.get("image", "")) in INTERNS_IMAGES and not any(
            source.get("configMapRef", {}).get("name") == CONFIG_MAP
            for source in container.get("envFrom", [])
        ):
            self.problem(f"{where}: envFrom does not take the ConfigMap {CONFIG_MAP}")
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            if ref.get("name") != SECRET or ref.get("optional", False) is not False:
                self.problem(
                    f"{where}: env {variable.get('name')} must come from Secret {SECRET} "
                    "with optional: false"
                )
            if ref.get("key") != variable.get("name"):
                self.problem(f"{where}: env {variable.get('name')} reads key {ref.get('key')!r}")
        gpus = {
            part: str(resources.get(part, {}).get(GPU))
            for part in ("requests", "limits")
            if GPU in resources.get(part, {})
        }
        if gpus:
            if len(set(gpus.values())) != 1 or "limits" not in gpus:
                self.problem(f"{where}: {GPU} must be in limits (and equal in requests)")
            if not pod.get("nodeSelector"):
                self.problem(f"{where}: requests a GPU but has no nodeSelector (GPU node pool)")
            if not any(t.get("key") == GPU for t in pod.get("tolerations", [])):
                self.problem(f"{where}: requests a GPU but tolerates no {GPU} taint")

    # --- what points at pods ----------------------------------------------------------------

    def matching_pods(self, selector: dict) -> list[tuple[str, dict, dict]]:
        return [pod for pod in self.pods() if selector and selects(selector, pod[1])]

    def check_services(self) -> None:
        for service in self.of("Service"):
            where = f"Service {service['metadata']['name']}"
            matches = self.matching_pods(service.get("spec", {}).get("selector", {}))
            if not matches:
                self.problem(f"{where}: selects no Deployment's pods")
                continue
            names = {
                p.get("name")
                for _, _, pod in matches
                for c in pod.get("containers", [])
                for p in c.get("ports", [])
            }
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort")
                if isinstance(target, str) and target not in names:
                    self.problem(f"{where}: targetPort {target!r} is no container port name")

    def check_autoscalers(self) -> None:
        targets: dict[str, list[str]] = {}
        for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            for scaler in self.of(kind):
                where = f"{kind} {scaler['metadata']['name']}"
                spec = scaler.get("spec", {})
                ref = spec.get("scaleTargetRef", {})
                name = ref.get("name")
                if ref.get("kind", "Deployment") != "Deployment" or name not in self.deployments:
                    self.problem(f"{where}: scaleTargetRef names no Deployment ({name!r})")
                    continue
                targets.setdefault(name, []).append(where)
                low_key, high_key = (
                    ("minReplicas", "maxReplicas")
                    if kind == "HorizontalPodAutoscaler"
                    else ("minReplicaCount", "maxReplicaCount")
                )
                low, high = spec.get(low_key, 1), spec.get(high_key)
                if high is None or low > high:
                    self.problem(f"{where}: {low_key} {low} and {high_key} {high} make no range")
        for name, scalers in targets.items():
            if len(scalers) > 1:
                self.problem(f"Deployment {name}: scaled by {' and '.join(scalers)}")
            if "replicas" in self.deployments[name].get("spec", {}):
                self.problem(
                    f"Deployment {name}: sets replicas, but {scalers[0]} owns the count "
                    "(every apply would reset it)"
                )

    def check_disruption_budgets(self) -> None:
        for budget in self.of("PodDisruptionBudget"):
            if not self.matching_pods(budget.get("spec", {}).get("selector", {})):
                self.problem(f"PodDisruptionBudget {budget['metadata']['name']}: selects no pods")

    def check_network_policies(self) -> None:
        policies = self.of("NetworkPolicy")
        default_deny = [
            p
            for p in policies
            if p["spec"].get("podSelector") in ({}, None)
            and "Ingress" in p["spec"].get("policyTypes", [])
            and not p["spec"].get("ingress")
        ]
        if not default_deny:
            self.problem("no default-deny ingress NetworkPolicy (empty podSelector, no rules)")
        for name, labels, pod in self.pods():
            mine = [
                p
                for p in policies
                if p["spec"].get("podSelector") and selects(p["spec"]["podSelector"], labels)
            ]
            if not mine:
                self.problem(f"Deployment {name}: no NetworkPolicy selects its pods")
            ports = {p.get("name") for c in pod.get("containers", []) for p in c.get("ports", [])}
            for policy in mine:
                for rule in policy["spec"].get("ingress", []):
                    for port in rule.get("ports", []):
                        if isinstance(port.get("port"), str) and port["port"] not in ports:
                            self.problem(
                                f"NetworkPolicy {policy['metadata']['name']}: port "
                                f"{port['port']!r} is no port of {name}'s pods"
                            )
                    for peer in rule.get("from", []):
                        chosen = peer.get("podSelector")
                        in_namespace = "namespaceSelector" not in peer
                        if chosen and in_namespace and not self.matching_pods(chosen):
                            self.problem(
                                f"NetworkPolicy {policy['metadata']['name']}: from "
                                f"{chosen} selects no pods"
                            )
        self.check_triton_control(policies)

    def check_triton_control(self, policies: list[dict]) -> None:
        """Triton's HTTP port serves the model control API: the deploy controller only."""
        for name, labels, pod in self.pods():
            if not any(
                image_name(c.get("image", "")) == "tritonserver" for c in pod.get("containers", [])
            ):
                continue
            for policy in policies:
                selector = policy["spec"].get("podSelector")
                if not selector or not selects(selector, labels):
                    continue
                for rule in policy["spec"].get("ingress", []):
                    ports = {p.get("port") for p in rule.get("ports", [])}
                    if ports and not ports & {"http", 8000}:
                        continue
                    peers = rule.get("from", [])
                    allowed = [p.get("podSelector", {}).get("matchLabels", {}) for p in peers]
                    if not peers or any(
                        set(p) != {"podSelector"} or a != {NAME: "deployer"}
                        for p, a in zip(peers, allowed, strict=True)
                    ):
                        self.problem(
                            f"NetworkPolicy {policy['metadata']['name']}: {name}'s HTTP port "
                            "(model control) must be open to the deploy controller only"
                        )

    def check_model_repository(self) -> None:
        for name, labels, pod in self.pods():
            volumes = {
                v["name"]
                for v in pod.get("volumes", [])
                if v.get("persistentVolumeClaim", {}).get("claimName") == MODEL_REPOSITORY
            }
            writer = labels.get(NAME) in REPOSITORY_WRITERS
            for container in pod.get("containers", []):
                for mount in container.get("volumeMounts", []):
                    if mount["name"] in volumes and not writer and not mount.get("readOnly"):
                        self.problem(
                            f"Deployment {name}: mounts the model repository writable; only "
                            "the training workers may"
                        )

    # --- Kafka ------------------------------------------------------------------------------

    def check_kafka(self) -> None:
        facts = code_facts()
        if facts is None and (self.of("ScaledObject") or self.of("Kafka")):
            print(
                f"{self.where}: interns is not importable with this Python: topic names and "
                "the collector's group are not compared with the code"
            )
        bootstrap = (self.config or {}).get("KAFKA_BOOTSTRAP_SERVERS")
        for scaler in self.of("ScaledObject"):
            for trigger in scaler.get("spec", {}).get("triggers", []):
                if trigger.get("type") != "kafka":
                    continue
                where = f"ScaledObject {scaler['metadata']['name']}"
                metadata = trigger.get("metadata", {})
                if metadata.get("bootstrapServers") != bootstrap:
                    self.problem(
                        f"{where}: bootstrapServers {metadata.get('bootstrapServers')!r} is not "
                        f"the ConfigMap's KAFKA_BOOTSTRAP_SERVERS {bootstrap!r}"
                    )
                if facts and metadata.get("topic") != facts["trace_topic"]:
                    self.problem(f"{where}: topic is not {facts['trace_topic']!r}")
                if facts and metadata.get("consumerGroup") != facts["collector_group"]:
                    self.problem(f"{where}: consumerGroup is not {facts['collector_group']!r}")
        clusters = [k["metadata"]["name"] for k in self.of("Kafka")]
        if not clusters:
            return
        if bootstrap and bootstrap.split(":")[0] not in {f"{c}-kafka-bootstrap" for c in clusters}:
            self.problem(f"KAFKA_BOOTSTRAP_SERVERS {bootstrap!r} is no bootstrap of {clusters}")
        declared = {t.get("spec", {}).get("topicName") for t in self.of("KafkaTopic")}
        for topic in sorted((facts or {}).get("topics", set()) - declared):
            self.problem(f"topic {topic} of interns.common.events has no KafkaTopic")


def check_files(root: Path) -> list[str]:
    """Without a renderer: every YAML parses, every path a kustomization names exists, and
    the base's own files keep the rules."""
    problems = []
    for path in sorted(root.rglob("*.y*ml")):
        try:
            docs = load([path])
        except yaml.YAMLError as error:
            problems.append(f"{path}: not valid YAML: {error}")
            continue
        if path.name != "kustomization.yaml":
            continue
        for doc in docs:
            named = [*doc.get("resources", []), *doc.get("components", [])]
            named += [p["path"] for p in doc.get("patches", []) if "path" in p]
            for entry in named:
                if not (path.parent / entry).exists():
                    problems.append(f"{path}: {entry} does not exist")
    base = root / "base" / "kustomization.yaml"
    if base.exists() and not problems:
        resources = yaml.safe_load(base.read_text()).get("resources", [])
        docs = load([base.parent / r for r in resources])
        problems += Checker(docs, str(base.parent)).run()
    return problems


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "rendered":
        where, path = args
        docs = load([path])
        problems = Checker(docs, where).run()
        custom = sorted({d["kind"] for d in docs if not is_builtin(d)})
        if custom and not problems:
            print(f"custom resources ({', '.join(custom)}): checked by these rules only")
    else:
        problems = check_files(Path(args[0]))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
