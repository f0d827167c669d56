#!/usr/bin/env bash
# Offline validation of docker-compose.yml; no Docker engine or network needed.
#  1. the file against the Compose Specification's JSON schema (vendored in check-jsonschema);
#  2. what the schema cannot see (scripts/check_compose_commands.py): depends_on targets,
#     named volumes, and that every Interns module the stack runs exists under services/.
#
# Usage: scripts/validate_compose.sh [COMPOSE_FILE]      (default: docker-compose.yml)
# Env:   CHECK_JSONSCHEMA  check-jsonschema binary (default: check-jsonschema on PATH)
#        PYTHON            a Python with pyyaml (default: python3)
set -uo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)

# A file given on the command line is taken from the caller's folder.
compose_file=$(realpath "${1:-$repo_root/docker-compose.yml}")
cd "$repo_root" || exit 2
check_jsonschema=${CHECK_JSONSCHEMA:-check-jsonschema}
python=${PYTHON:-python3}

if ! command -v "$check_jsonschema" >/dev/null 2>&1; then
  echo "validate_compose: '$check_jsonschema' not found: pip install check-jsonschema" \
    "(it is in the dev extra) or set CHECK_JSONSCHEMA" >&2
  exit 2
fi

status=0
echo "== Compose Specification schema: $compose_file"
if ! "$check_jsonschema" --builtin-schema vendor.compose-spec "$compose_file"; then
  echo "validate_compose: $compose_file does not follow the Compose Specification" >&2
  status=1
fi

# Run even when the schema fails, so one run reports every problem.
echo "== services, volumes and modules: $compose_file"
if ! "$python" scripts/check_compose_commands.py "$compose_file"; then
  echo "validate_compose: $compose_file refers to services, volumes or modules that do not exist" >&2
  status=1
fi

if [[ $status -eq 0 ]]; then
  echo "validate_compose: $compose_file is valid"
fi
exit $status
