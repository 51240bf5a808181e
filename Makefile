# AutoPay — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/contracts libs/runtime libs/store libs/bankmail libs/testing \
	services/gateway services/mail-ingest services/matcher services/notifier \
	services/merchant-bot tools/cli tools/devtools
MANIFESTS := $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt constraints.txt
PYTEST_WORKERS ?= 2

.PHONY: install run test test-cluster lint check format asyncapi bench chaos chaos-cluster clean

install: $(VENV)/.installed

$(VENV)/.installed: $(MANIFESTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	@touch $@

# `make run NATS_CLUSTER=3`: the same on a local 3-node NATS cluster (in a fresh .autopay/).
run: install
	$(BIN)/autopay dev up --state-dir .autopay $(if $(NATS_CLUSTER),--nats-cluster $(NATS_CLUSTER)) \
		$(if $(REDIS_CLUSTER),--redis-cluster $(REDIS_CLUSTER))

test: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The e2e suite again, every stack on a local 3-node NATS JetStream cluster and a 3-master Redis
# Cluster (streams at R3), and the harness's cluster tests. `make test` runs those and the failover test, but
# the suite on one server. test_make_run is left out: `make run` has one server.
test-cluster: install
	AUTOPAY_E2E_NATS_CLUSTER=3 AUTOPAY_E2E_REDIS_CLUSTER=3 $(BIN)/pytest -n $(PYTEST_WORKERS) \
		--dist loadfile tests/e2e libs/testing/tests/test_nats_cluster.py \
		libs/testing/tests/test_redis_cluster.py --ignore=tests/e2e/test_make_run.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The architecture and dependency guards (issue #11): import contracts ([tool.importlinter] in
# pyproject.toml), types on libs and services ([tool.mypy]), and per package, declared
# dependencies equal to the imported ones ([tool.deptry] in each package's pyproject.toml).
check: install
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy
	@set -e; for p in $(PACKAGES); do echo "deptry $$p"; (cd $$p && $(abspath $(BIN))/deptry src); done

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

asyncapi: install
	$(BIN)/autopay asyncapi --out docs/asyncapi

bench: install
	$(BIN)/python -m autopay_devtools.bench $(BENCH)

# The chaos run: a fresh dev stack in a temporary state dir, orders paid by bank
# mail while services and Redis are SIGKILLed; the figures as one JSON line; fails unless clean.
# Options pass through CHAOS, e.g. `make chaos CHAOS="--orders 100 --duration 60"`. A failed
# run keeps its state dir (logs/) and says where.
chaos: install
	@state=$$(mktemp -d "$${TMPDIR:-/tmp}/autopay-chaos-XXXXXX"); \
	trap '$(BIN)/autopay dev down --state-dir "$$state"; exit 130' INT TERM; \
	$(BIN)/autopay dev up --detach --state-dir "$$state" $(STACK) >/dev/null || { \
		echo "chaos: the dev stack did not start; see $$state/logs" >&2; \
		$(BIN)/autopay dev down --state-dir "$$state" 2>/dev/null; exit 1; }; \
	$(BIN)/python -m autopay_devtools.chaos --state-dir "$$state" $(CHAOS); rc=$$?; \
	$(BIN)/autopay dev down --state-dir "$$state"; \
	if [ $$rc -eq 0 ]; then rm -rf "$$state"; else echo "chaos: failed; logs in $$state/logs" >&2; fi; \
	exit $$rc

# The same on the cluster stack (3 NATS nodes with the streams at R3, a 3-master Redis
# Cluster): one Redis master restarts with its AOF and one NATS node is SIGKILLed mid-run.
chaos-cluster: install
	@$(MAKE) --no-print-directory chaos STACK="--nats-cluster 3 --redis-cluster 3" \
		CHAOS="--nats-kills 1 $(CHAOS)"

clean:
	rm -rf $(VENV) .autopay
