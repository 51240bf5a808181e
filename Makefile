# AutoPay — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/contracts libs/runtime libs/store libs/bankmail libs/testing \
	services/gateway services/mail-ingest services/matcher services/notifier \
	services/merchant-bot tools/cli
MANIFESTS := $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt constraints.txt
PYTEST_WORKERS ?= 2

.PHONY: install run test lint format asyncapi bench clean

install: $(VENV)/.installed

$(VENV)/.installed: $(MANIFESTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	@touch $@

run: install
	$(BIN)/autopay dev up --state-dir .autopay

test: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

asyncapi: install
	$(BIN)/autopay asyncapi --out docs/asyncapi

bench: install
	$(BIN)/python -m autopay_cli.bench $(BENCH)

clean:
	rm -rf $(VENV) .autopay
