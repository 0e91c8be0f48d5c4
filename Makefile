# Entry points named as the README names them. Every target installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m devstack
PYTEST_ARGS ?=

.PHONY: install up down status lint test test-unit chaos demo bench schemas clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

up: install
	$(STACK) up

down: install
	$(STACK) down

status: install
	$(STACK) status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy saga_worker participants schemas devstack tests

# Starts Kafka and Redis if they are not running, runs every suite but the long
# chaos run, and stops only what it started.
test: install
	$(STACK) run -- $(PY) -m pytest -m "not chaos" $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

chaos: install
	$(STACK) run -- $(PY) -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

schemas: install
	$(PY) -m schemas.export schemas/json

clean: down
	rm -rf .runtime
