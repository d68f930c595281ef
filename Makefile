# contract mesh: dev environment, local stack and test entry points.
# A fresh clone needs only `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv

# Every installable project: the libs, and each service that has a pyproject
# (services are added over time, so look at what exists).
LIBS := libs/contract_schema libs/mesh_common libs/mesh_testing libs/mesh_chaos
PROJECTS = $(foreach d,$(LIBS) $(patsubst %/pyproject.toml,%,$(wildcard services/*/pyproject.toml)),$(if $(wildcard $(d)/pyproject.toml),$(d)))
PYPROJECTS = $(sort $(wildcard libs/*/pyproject.toml services/*/pyproject.toml))
# The stamp is named after what the venv is synced from (this checkout's path, the constraints, every
# pyproject and this Makefile), not after their mtimes: a fresh clone, a restored or copied .venv and
# a checkout of another branch re-sync whenever one of them differs, and an old stamp that happens to
# be newer than the files never skips a sync.
SYNC_KEY := $(shell { echo "$(CURDIR)"; cat constraints.txt $(PYPROJECTS) Makefile; } 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.synced-$(SYNC_KEY)
# The distribution names before every project took the contract-mesh- prefix. A venv synced before
# drops them first: uninstalling them after the install would delete the console scripts the new
# editable installs share with them.
OLD_DISTS := contract-schema mesh-common mesh-testing mesh-chaos contract-registry invoice-validator \
             obligation-engine renewal-sync notifier mesh-sim
# Dev tools nobody's package depends on; versions come from constraints.txt.
DEV_TOOLS := ruff mypy types-PyYAML types-python-dateutil jsonschema pyyaml selenium

export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(or $(KAFKA_PORT),9092)

.PHONY: venv kafka-jars postgres-install browser-install deploy-tools test lint typecheck pytest up down status schemas bench demo chaos clean

venv: $(STAMP)

# Re-synced when the checkout, a pyproject, the constraints or this Makefile change (see SYNC_KEY).
$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt uv
	@$(UV) pip uninstall -q --python $(PY) $(OLD_DISTS)
	$(UV) pip install -q --python $(PY) -c constraints.txt $(addprefix -e ,$(PROJECTS)) $(DEV_TOOLS)
	@rm -f $(VENV)/.synced $(VENV)/.synced-*
	@touch $@

# Cheap when up to date: the script re-fetches only when pom.xml changed.
kafka-jars:
	@bash infra/scripts/kafka.sh jars

postgres-install:
	@bash infra/scripts/postgres.sh install

# Debian's chromium and chromium-driver for the portfolio dashboard's browser test (only when missing).
browser-install:
	@bash services/portfolio/scripts/browser.sh install

# kustomize, kubeconform, toxiproxy-server and the compose/Dockerfile checkers (Go module proxy), cached in .cache/bin.
deploy-tools:
	@bash deploy/tools/install.sh

# The suite mostly waits (on brokers, restarts, kills), so it runs its test files on two workers: each
# worker starts its own session broker and cluster, and a file's tests stay on one worker (module-scoped
# fixtures such as own_kafka or the short campaign start once). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: venv kafka-jars postgres-install browser-install deploy-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

# The pure and service-layer tests (every libs/*/tests/unit and services/*/tests/unit; no broker, no
# database: a test there that asks for one fails). Seconds; `make test` still runs everything.
.PHONY: unit
unit: venv
	MESH_TEST_NO_SERVERS=1 $(VENV)/bin/pytest -q $(wildcard libs/*/tests/unit services/*/tests/unit)

pytest: venv kafka-jars postgres-install browser-install deploy-tools
	$(VENV)/bin/pytest $(ARGS)

# The local stack. The scripts themselves refuse to start a second copy.
up: venv kafka-jars
	@bash infra/scripts/kafka.sh start
	@bash infra/scripts/postgres.sh start
	$(PY) -m mesh_common.provision
	@if [ -x infra/scripts/services.sh ]; then infra/scripts/services.sh start; \
	 else echo "no infra/scripts/services.sh yet: services are not started by make up"; fi

down:
	@if [ -x infra/scripts/services.sh ]; then infra/scripts/services.sh stop; fi
	@bash infra/scripts/kafka.sh stop
	@bash infra/scripts/postgres.sh stop

status:
	@bash infra/scripts/kafka.sh status || true
	@bash infra/scripts/postgres.sh status || true
	@if [ -x infra/scripts/services.sh ]; then infra/scripts/services.sh status || true; fi

# The whole story end to end against the local stack; starts it (make up) when it is not running.
demo: venv kafka-jars postgres-install
	$(PY) -m mesh_sim.demo

# Containers with podman (Debian's packages, installed by the scripts): the project's image from the
# Dockerfile on a Debian base built by debootstrap (cached in .cache/containers), then its size and each
# process's start-up time in a container. See README "Containers".
.PHONY: image compose-up compose-down demo-containers
image: venv kafka-jars postgres-install
	@bash deploy/containers/image.sh >/dev/null
	$(PY) deploy/containers/startup.py

# docker-compose.yml under podman-compose with local Kafka/PostgreSQL/collector images, started in order.
compose-up: venv kafka-jars
	@bash deploy/containers/compose.sh up

compose-down:
	@bash deploy/containers/compose.sh down -v

# The demo story against the compose stack (brings it up; `make compose-down` removes it).
demo-containers: venv kafka-jars
	@bash deploy/containers/demo.sh

# The fault campaign over the whole mesh (its own broker, cluster and processes on free ports; never the
# make-up stack): CHAOS_ARGS="--seed 7 --duration 300" to change it. See README "Guarantees, proven".
CHAOS_ARGS ?= --seed 1 --duration 1200 --all-replicas
chaos: venv kafka-jars postgres-install chaos-tools
	$(PY) -m mesh_chaos $(CHAOS_ARGS)

# toxiproxy-server (Go module proxy) for the campaign's network faults, cached in .cache/bin.
.PHONY: chaos-tools
chaos-tools:
	@bash deploy/tools/install.sh --only=toxiproxy

schemas: venv
	$(PY) -m contract_schema.export

bench: venv kafka-jars
	@if [ -f infra/scripts/bench.sh ]; then bash infra/scripts/bench.sh; \
	 else echo "infra/scripts/bench.sh does not exist yet"; exit 1; fi

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
