# Entry points named as the README names them. Every target installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m devstack
PYTEST_ARGS ?=
DEMO_ARGS ?=
# REDIS=cluster: a local 3-primary, 3-replica Redis Cluster instead of the single Redis
# (devstack/cluster.py; base port SAGA_REDIS_CLUSTER_PORT, 7000 by default).
REDIS ?= single
export SAGA_REDIS_MODE ?= $(REDIS)

.PHONY: install up down status lint test test-cluster test-unit mutation chaos demo bench hops soak \
	schemas clean images compose test-containers test-compose browser check-alerts console \
	console-screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip 25.1 or later installs the development dependency group (PEP 735).
	$(PY) -m pip install -q --upgrade 'pip>=25.1'
	$(PY) -m pip install -q -e '.[console]' --group dev
	touch $@

install: $(VENV)/.installed

# `make up SECURE=1` also starts a secured broker and Redis (devstack/secure.py): TLS,
# SCRAM-SHA-512, client certificates and an ACL user; settings in .runtime/secure/client.env.
SECURE ?=
up: install
	SAGA_DEVSTACK_SECURE=$(SECURE) $(STACK) up

down: install
	$(STACK) down

status: install
	$(STACK) status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy saga_worker participants schemas examples devstack tests benchmarks

# Debian's chromium, which the console's browser tests (tests/console) drive through
# Playwright: installed as root with apt-get when /usr/bin/chromium is missing.
browser: install
	$(PY) -m devstack.tools chromium

# The Prometheus alert rules (deploy/prometheus/alerts.yml) through `promtool check rules`,
# taken from Debian's prometheus package, unpacked under .cache (no server is installed).
check-alerts: install
	$(PY) -m devstack.tools promtool check rules deploy/prometheus/alerts.yml

# The operator console on http://127.0.0.1:8080 (SAGA_CONSOLE_* settings; see the README).
console: install
	$(VENV)/bin/saga-worker console

# Screenshots of every console page over the system `make demo KEEP=1` left running (export
# the SAGA_TOPIC_PREFIX and SAGA_KEY_PREFIX it printed): .runtime/screenshots/demo-*.png.
console-screenshots: browser
	$(PY) -m tests.console.screenshots

# Starts Kafka and Redis if they are not running, runs every suite (the chaos suite
# in its short form, the console's in headless chromium) and stops only what it started.
test: install browser
	$(STACK) run -- $(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-cluster

# Against a local Redis Cluster (devstack/cluster.py): the store's, the orchestrator's, the
# participants', the CLI's and the console's suites, the short chaos suite (on a cluster of
# its own, every node killed at once) and the cluster chaos test (three orchestrators, a
# kill, a rebalance, a primary's failover). `make test` runs it too.
CLUSTER_SUITES ?= tests/integration/test_store_bounds.py tests/integration/test_orchestrator_sagas.py \
	tests/integration/test_orchestrator_crashes.py tests/integration/test_orchestrator_lifecycle.py \
	tests/integration/test_orchestrator_dead_letters.py tests/integration/test_participant_effects.py \
	tests/integration/test_participant_sagas.py tests/integration/test_participant_workers.py \
	tests/integration/test_participant_retention.py tests/integration/test_handler_participants.py \
	tests/integration/test_cli_operator.py tests/integration/test_waits_and_children.py \
	tests/integration/test_timer_isolation.py tests/console tests/chaos/test_chaos.py \
	tests/chaos/test_cluster_chaos.py
test-cluster: install
	SAGA_REDIS_MODE=cluster $(STACK) run -- $(PY) -m pytest $(CLUSTER_SUITES) $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Mutation testing of the pure core (tests/mutation/run.py): mutmut's one-line changes to
# the engine and the app, against a fast subset of tests/unit, in a copy of the tree under
# .cache/mutation. Prints the score and every surviving mutant; fails below 95%.
# MUTATION_SAMPLE=400 tests a random sample (its seed printed; MUTATION_SEED=<seed> replays
# it), MUTATION_JOBS=<n> mutants at once, MUTATION_THRESHOLD=<percent> (90 or more).
MUTATION_ARGS ?=
mutation: install
	$(PY) -m tests.mutation.run $(MUTATION_ARGS)

# The long chaos run: thousands of sagas while workers, Redis and the broker are
# killed. It runs its own Kafka and Redis; SAGA_CHAOS_SEED=<seed> replays a schedule.
SAGA_CHAOS_SAGAS ?= 3000
chaos: install
	SAGA_CHAOS_SAGAS=$(SAGA_CHAOS_SAGAS) $(PY) -m pytest tests/chaos -s $(PYTEST_ARGS)

# The whole system on a few hundred orders. Stops what it started; `make demo KEEP=1`
# leaves Kafka, Redis and the workers running to look around with the CLI.
demo: install
ifdef KEEP
	$(STACK) up
	$(PY) -m participants demo --keep $(DEMO_ARGS)
else
	$(STACK) run -- $(PY) -m participants demo $(DEMO_ARGS)
endif

# Container images where no registry answers (devstack/images.py): installs and starts a
# Docker engine if none answers (Debian's docker.io, as root), builds a Debian bookworm
# base with debootstrap from this machine's mirror, then the Kafka, Redis and saga-worker
# images named in docker/local.env. IMAGES_ARGS=--fresh builds the base again too.
IMAGES_ARGS ?=
images: install
	$(PY) -m devstack.images build $(IMAGES_ARGS)

# `docker compose` (v2), built from its Go module into ~/.docker/cli-plugins if missing.
compose: install
	$(PY) -m devstack.images compose

# The settings that select images: docker/local.env (the images of `make images`) unless
# IMAGES_ENV= (empty: the official images, or what the environment names).
IMAGES_ENV ?= docker/local.env
USE_IMAGES = $(if $(IMAGES_ENV),set -a && . ./$(IMAGES_ENV) && set +a &&)
TESTCONTAINERS_CONNECTION_MODE ?= docker_host

# The integration suite (TC_TESTS) once through testcontainers: Kafka (KRaft) and Redis in
# containers, whatever KAFKA_BOOTSTRAP_SERVERS says. Ryuk, testcontainers' reaper, has no
# local image: the fixtures remove their containers themselves. Left out: the files that
# never use the session's Kafka and Redis (the wheel's own install, devstack's private
# stacks, the secured stack of its own), so a second run of them would prove nothing.
TC_TESTS ?= tests/integration --ignore=tests/integration/test_wheel.py \
	--ignore=tests/integration/test_devstack_lifecycle.py \
	--ignore=tests/integration/test_secured_stack.py
test-containers: install
	$(USE_IMAGES) SAGA_TEST_SERVICES=testcontainers \
	TESTCONTAINERS_CONNECTION_MODE=$(TESTCONTAINERS_CONNECTION_MODE) \
	TESTCONTAINERS_RYUK_DISABLED=true \
	$(PY) -m pytest $(TC_TESTS) $(PYTEST_ARGS)

# docker-compose.yml for real (tests/docker/test_compose.py): the whole stack up, orders,
# `down` and `up` again, checks, everything removed.
test-compose: compose
	$(USE_IMAGES) $(PY) -m pytest -m compose tests/docker $(PYTEST_ARGS)

schemas: install
	$(PY) -m schemas.export schemas/json

# Throughput, latency and memory of saga-worker against a pass-through floor and a
# naive orchestrator, on the local Kafka and Redis. BENCH_ARGS=--quick for a smoke run.
BENCH_ARGS ?=
bench: install
	$(STACK) run -- $(PY) -m benchmarks.run $(BENCH_ARGS)

# Where a saga's latency goes, hop by hop: idle, or HOPS_ARGS="--rate 250" for an open loop.
HOPS_ARGS ?=
hops: install
	$(STACK) run -- $(PY) -m benchmarks.hops $(HOPS_ARGS)

# An hour of sagas whose confirmation always fails: each must end in needs_operator,
# no larger than its bounded history. SOAK_ARGS="--rate 0.2 --start-minutes 10" to vary.
SOAK_ARGS ?=
soak: install
	$(STACK) run -- $(PY) -m benchmarks.soak $(SOAK_ARGS)

clean: down
	rm -rf .runtime
