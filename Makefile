# Entry points for people and CI. Every target that needs a tool first runs
# scripts/ensure-host.sh, which installs what is missing (Debian packages, the
# Docker engine, the virtual environment, the real Ollama built from source and
# the test models), so `make demo` and `make test` work on a fresh Debian 12
# machine.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Molecule starts ansible-playbook and pytest from PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export OLLAMA_RAMDISK_TEST_IMAGE ?= ollama-ramdisk-test:bookworm
export ANSIBLE_FORCE_COLOR ?= $(if $(CI),0,1)
export PY_COLORS ?= $(if $(CI),0,1)

DEMO_INSTANCE := ollama-demo
# Options of benchmarks/run.py, e.g. BENCH_ARGS="--quick" or "--repeat 9 --only 1,4",
# of benchmarks/loads.py (the real Ollama), e.g. LOADS_ARGS="--repeat 3", of
# benchmarks/fleet.py (idempotent site.yml runs), e.g. FLEET_ARGS="--repeat 3", and
# of benchmarks/pages.py (fills by page size), e.g. PAGES_ARGS="--no-profile", and of
# benchmarks/distribution.py (a fleet's pulls), e.g. DIST_ARGS="--repeat 3".
BENCH_ARGS ?=
LOADS_ARGS ?=
FLEET_ARGS ?=
PAGES_ARGS ?=
DIST_ARGS ?=

.PHONY: help ensure-host venv ollama lint unit compat unit-under-load image molecule molecule-trixie collection collection-sanity test demo demo-clean bench clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

ensure-host: ## Install what the tests need (packages, Docker engine, .venv)
	scripts/ensure-host.sh

venv: ## Create .venv with the project and its dev tools
	scripts/ensure-host.sh venv

lint: venv ## ruff, yamllint, ansible-lint (production profile), playbook syntax, shellcheck
	scripts/test-all.sh lint

ollama: ensure-host ## Build the pinned Ollama from source and make the test models (cached per release)
	scripts/ensure-host.sh models

unit: venv ollama ## pytest: the core and the modules (the real Ollama too), in parallel
	$(BIN)/pytest -n $$(( $$(nproc) + 1 ))

unit-under-load: venv ollama ## The whole unit suite RUNS times in a row (10) beside a busy loop per core
	scripts/unit-under-load.sh $${RUNS:-10}

compat: ensure-host ## The core's unit tests on Debian 11's Python 3.9 and Debian 13's Python 3.13
	scripts/core-tests.sh bullseye
	scripts/core-tests.sh trixie

image: ## Build the local test image (skipped when present)
	scripts/ensure-host.sh docker
	scripts/build-test-image.sh

molecule: ensure-host ollama image ## Molecule: every scenario on systemd instances, two at a time
	scripts/test-all.sh molecule

molecule-trixie: ensure-host ollama ## Molecule: every scenario on Debian 13 instances (not in `make test`: time)
	scripts/ensure-host.sh docker
	SUITE=trixie scripts/build-test-image.sh
	OLLAMA_RAMDISK_TEST_IMAGE=ollama-ramdisk-test:trixie scripts/test-all.sh molecule

collection: venv ## Build the Ansible collection ollama_fleet.ollama_ramdisk into dist/ (prints the tarball)
	$(PY) scripts/build-collection.py

collection-sanity: venv ## ansible-test sanity and ansible-lint on the built collection
	scripts/collection-sanity.sh

test: ## Everything CI runs: lint, unit tests, other Pythons, Molecule, side by side
	scripts/test-all.sh

demo: ensure-host ollama image ## A demo server with a sample store, provisioned by playbooks/site.yml
	$(BIN)/molecule converge --scenario-name demo
	@echo
	@echo "== ollama-ramdisk status on $(DEMO_INSTANCE) =="
	docker exec $(DEMO_INSTANCE) /usr/local/sbin/ollama-ramdisk status --store /mnt/ollama/models
	@echo
	@echo "== the real Ollama on $(DEMO_INSTANCE): ollama list, then ollama run (random weights: gibberish) =="
	docker exec $(DEMO_INSTANCE) ollama list
	docker exec $(DEMO_INSTANCE) ollama run llama3.1:8b "Say hello"
	@echo
	@echo "Log in with: docker exec -it $(DEMO_INSTANCE) bash    Remove it with: make demo-clean"

demo-clean: venv ## Remove the demo server
	$(BIN)/molecule destroy --scenario-name demo

bench: venv ollama image ## Performance figures, as root, into benchmarks/RESULTS.md and the README; BENCH_ARGS="--quick" for a smoke run
	$(PY) benchmarks/run.py $(BENCH_ARGS)
	$(PY) benchmarks/loads.py $(LOADS_ARGS)
	$(PY) benchmarks/fleet.py $(FLEET_ARGS)
	$(PY) benchmarks/pages.py $(PAGES_ARGS)
	$(PY) benchmarks/distribution.py $(DIST_ARGS)
	$(PY) benchmarks/report.py

clean: ## Remove test instances and caches (keeps .venv and the test image)
	if [[ -x $(BIN)/molecule ]] && docker info >/dev/null 2>&1; then $(BIN)/molecule destroy --all; fi
	rm -rf .pytest_cache .ruff_cache .hypothesis benchmarks/out build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## Also remove .venv, .cache and the test image
	if docker info >/dev/null 2>&1; then docker image rm -f $(OLLAMA_RAMDISK_TEST_IMAGE) >/dev/null 2>&1 || true; fi
	rm -rf $(VENV) .cache
