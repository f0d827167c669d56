#!/usr/bin/env bash
# Generates the gRPC stubs of proto/ into services/api (the package interns.api).
# With --check, generates into a temporary folder and fails when the committed stubs differ.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" proto/interns/api/v1/*.proto
touch "$out/interns/api/__init__.py" "$out/interns/api/v1/__init__.py"
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -x __pycache__ "$out/interns/api" services/api >/dev/null; then
    diff -r -x __pycache__ "$out/interns/api" services/api || true
    echo "generated stubs in services/api are stale: run 'make proto'" >&2
    exit 1
  fi
  echo "proto stubs are up to date"
else
  rm -rf services/api
  cp -r "$out/interns/api" services/api
  echo "wrote services/api"
fi
