#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests under k8s/ (no cluster needed).
#  1. render every kustomization (k8s/base, k8s/overlays/*) with `kubectl kustomize` or
#     `kustomize build`; without either, parse every YAML file under k8s/ and check that
#     each kustomization's resources exist;
#  2. validate the rendered objects against the Kubernetes OpenAPI schemas with
#     kubernetes-validate (strict: unknown fields are errors), when it is installed;
#  3. check the project's rules on every rendered object: hardened pods (non-root uid
#     10001, read-only root filesystem, no privilege escalation, all capabilities
#     dropped), requests and limits, readiness and liveness probes, settings from the
#     ConfigMap `interns-config`, credentials only from the Secret `interns-secrets`
#     (never a Secret object in the manifests), Services that select a Deployment's pods.
#
# Usage: scripts/validate_k8s.sh [K8S_DIR]            (default: k8s/ of this repo)
# Env:   KUBECTL              kubectl binary (default: kubectl on PATH)
#        KUSTOMIZE            kustomize binary, used when there is no kubectl
#        KUBERNETES_VALIDATE  kubernetes-validate binary (pip install kubernetes-validate)
#        KUBERNETES_VERSION   schema version to validate against (default 1.30.0, the
#                             oldest Kubernetes these manifests support)
#        PYTHON               a Python with pyyaml (default: python3)
set -uo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
k8s_dir=$(realpath "${1:-$repo_root/k8s}")

kubectl=${KUBECTL:-kubectl}
kustomize=${KUSTOMIZE:-kustomize}
kubernetes_validate=${KUBERNETES_VALIDATE:-kubernetes-validate}
kubernetes_version=${KUBERNETES_VERSION:-1.30.0}
python=${PYTHON:-python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0

if command -v "$kubectl" >/dev/null 2>&1; then
  render=("$kubectl" kustomize)
elif command -v "$kustomize" >/dev/null 2>&1; then
  render=("$kustomize" build)
else
  render=()
fi

# The policy checks read YAML documents: rendered output, or the raw files.
policy_check() {
  "$python" - "$@" <<'PY'
import sys
from pathlib import Path

import yaml

UID = 10001
CONFIG_MAP = "interns-config"
SECRET = "interns-secrets"
problems = []


def load(paths):
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            docs += [doc for doc in yaml.safe_load_all(handle) if doc]
    return docs


def check_workloads(docs, where):
    kinds = {(doc.get("kind"), doc.get("metadata", {}).get("name")) for doc in docs}
    deployments = [doc for doc in docs if doc.get("kind") == "Deployment"]
    if not deployments:
        problems.append(f"{where}: no Deployment")
    if any(doc.get("kind") == "Secret" for doc in docs):
        problems.append(f"{where}: a Secret object is in the manifests: create it in the cluster instead")
    pod_labels = {}
    for deployment in deployments:
        name = f"{where}: Deployment {deployment['metadata']['name']}"
        spec = deployment.get("spec", {})
        template = spec.get("template", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        labels = template.get("metadata", {}).get("labels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{name}: selector does not match the pod template's labels")
        pod = template.get("spec", {})
        pod_labels[deployment["metadata"]["name"]] = (labels, pod)
        account = pod.get("serviceAccountName")
        if not account or ("ServiceAccount", account) not in kinds:
            problems.append(f"{name}: serviceAccountName {account!r} is not defined")
        pod_security = pod.get("securityContext", {})
        for key, want in (("runAsNonRoot", True), ("runAsUser", UID)):
            if pod_security.get(key) != want:
                problems.append(f"{name}: pod securityContext.{key} must be {want!r}")
        for container in pod.get("containers", []):
            cname = f"{name} container {container.get('name')}"
            security = container.get("securityContext", {})
            wanted = {
                "runAsNonRoot": True, "runAsUser": UID, "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
            }
            for key, want in wanted.items():
                if security.get(key) != want:
                    problems.append(f"{cname}: securityContext.{key} must be {want!r}")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{cname}: securityContext.capabilities.drop must be [ALL]")
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(part, {}):
                        problems.append(f"{cname}: resources.{part}.{resource} is missing")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{cname}: {probe} is missing")
            port_names = {port.get("name") for port in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in port_names:
                    problems.append(f"{cname}: {probe} uses unknown port name {port!r}")
            if not any(
                source.get("configMapRef", {}).get("name") == CONFIG_MAP
                for source in container.get("envFrom", [])
            ):
                problems.append(f"{cname}: envFrom does not take the ConfigMap {CONFIG_MAP}")
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                if ref.get("name") != SECRET or ref.get("optional", False) is not False:
                    problems.append(
                        f"{cname}: env {variable.get('name')} must come from Secret {SECRET} "
                        "with optional: false"
                    )
                if ref.get("key") != variable.get("name"):
                    problems.append(f"{cname}: env {variable.get('name')} reads key {ref.get('key')!r}")
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and ("PersistentVolumeClaim", claim) not in kinds:
                problems.append(f"{name}: PersistentVolumeClaim {claim!r} is not defined")
    if ("ConfigMap", CONFIG_MAP) not in kinds:
        problems.append(f"{where}: ConfigMap {CONFIG_MAP} is not defined")
    for service in (doc for doc in docs if doc.get("kind") == "Service"):
        name = f"{where}: Service {service['metadata']['name']}"
        selector = service.get("spec", {}).get("selector", {})
        matches = [
            (labels, pod) for labels, pod in pod_labels.values()
            if selector and all(labels.get(k) == v for k, v in selector.items())
        ]
        if not matches:
            problems.append(f"{name}: selects no Deployment's pods")
            continue
        names = {p.get("name") for _, pod in matches for c in pod.get("containers", []) for p in c.get("ports", [])}
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str) and target not in names:
                problems.append(f"{name}: targetPort {target!r} is no container port name")


mode, *args = sys.argv[1:]
if mode == "rendered":
    where, path = args
    check_workloads(load([path]), where)
else:  # raw files: every YAML under the folder, kustomization resources, then the base
    root = Path(args[0])
    for path in sorted(root.rglob("*.y*ml")):
        try:
            docs = load([path])
        except yaml.YAMLError as error:
            problems.append(f"{path}: not valid YAML: {error}")
            continue
        if path.name == "kustomization.yaml":
            for doc in docs:
                for resource in doc.get("resources", []):
                    if not (path.parent / resource).exists():
                        problems.append(f"{path}: resource {resource} does not exist")
    base = root / "base" / "kustomization.yaml"
    if base.exists() and not problems:
        resources = yaml.safe_load(base.read_text()).get("resources", [])
        check_workloads(load([base.parent / r for r in resources]), str(base.parent))
for problem in problems:
    print(problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

mapfile -t kustomizations < <(find "$k8s_dir" -name kustomization.yaml -printf '%h\n' | sort)
if [[ ${#kustomizations[@]} -eq 0 ]]; then
  echo "validate_k8s: no kustomization.yaml under $k8s_dir" >&2
  exit 1
fi

if [[ ${#render[@]} -eq 0 ]]; then
  echo "validate_k8s: neither '$kubectl' nor '$kustomize' found: checking the raw files only;" \
    "full rendering and schema validation are not available here"
  if policy_check files "$k8s_dir"; then
    echo "validate_k8s: YAML files, kustomization resources and project rules check out"
  else
    echo "validate_k8s: the files under $k8s_dir have the problems above" >&2
    status=1
  fi
  exit $status
fi

have_schema=0
if command -v "$kubernetes_validate" >/dev/null 2>&1; then
  have_schema=1
else
  echo "validate_k8s: '$kubernetes_validate' not found: schema validation skipped" \
    "(pip install kubernetes-validate, or set KUBERNETES_VALIDATE)"
fi

for dir in "${kustomizations[@]}"; do
  name=${dir#"$k8s_dir"/}
  rendered="$work/$(echo "$name" | tr / _).yaml"
  echo "== $name"
  if ! "${render[@]}" "$dir" >"$rendered"; then
    echo "validate_k8s: $name does not render" >&2
    status=1
    continue
  fi
  echo "rendered $(grep -c '^kind:' "$rendered") objects"
  if [[ $have_schema -eq 1 ]]; then
    if "$kubernetes_validate" --strict --quiet -k "$kubernetes_version" "$rendered"; then
      echo "schema: valid against Kubernetes $kubernetes_version (strict)"
    else
      echo "validate_k8s: $name is not valid against the Kubernetes $kubernetes_version schemas" >&2
      status=1
    fi
  fi
  if policy_check rendered "$name" "$rendered"; then
    echo "project rules: ok"
  else
    echo "validate_k8s: $name breaks the project's rules above" >&2
    status=1
  fi
done

if [[ $status -eq 0 ]]; then
  echo "validate_k8s: every kustomization under $k8s_dir is valid"
fi
exit $status
