# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Load the URLs that `make infra` wrote, unless the caller set their own.
WITH_INFRA := set -a; [ -z "$${RABBITMQ_URL:-}$${DATABASE_URL:-}" ] && [ -f .run/infra.env ] && . .run/infra.env; set +a;

.PHONY: venv infra infra-down migrate run browser docker-engine compose-up compose-down test test-unit \
	test-integration lint lock clean chaos chaos-cluster cluster-up cluster-down bench

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

infra:
	bash scripts/infra.sh up

infra-down:
	bash scripts/infra.sh down

# Every service of shared/manifest.py: its role, its schema, its migrations.
migrate: venv infra
	$(WITH_INFRA) $(PY) -m shared.db.migrate

run: venv infra migrate
	$(WITH_INFRA) $(PY) -m devtools.run_system

# Debian's Chromium and chromedriver, for the browser tests (tests/browser).
browser:
	bash scripts/ensure-browser.sh

# A Docker engine for tests/compose (the system under docker compose) and the behaviour tests
# on testcontainers: started, or installed and started, when none answers. Where that cannot
# be done (no root), those tests are skipped, unless REQUIRE_DOCKER=1 (CI) makes them fail.
docker-engine:
	@bash scripts/docker-engine.sh up || echo "[make] no Docker engine: tests/compose will be skipped"

# The third way to run the system: docker compose, detached (deploy/compose.yaml).
compose-up:
	bash scripts/compose.sh up

compose-down:
	bash scripts/compose.sh down

# The bulk of the tests runs on the local servers of `make infra`, whatever engine answers;
# tests/compose brings up its own compose project on other host ports; the behaviour tests
# run a second time on RabbitMQ and Postgres containers from testcontainers.
test: venv infra browser docker-engine
	$(WITH_INFRA) $(PY) -m pytest
	@if [ -f .run/compose.env ] && timeout 15 docker info >/dev/null 2>&1; then \
		set -a; . .run/compose.env; set +a; \
		echo "[make] behaviour tests again, on testcontainers ($$COMPOSE_IMAGES images)"; \
		INFRA_MODE=containers TESTCONTAINERS_RYUK_DISABLED=true $(PY) -m pytest tests/behaviour -q; \
	fi

test-unit: venv
	$(PY) -m pytest -m "not integration and not e2e"

test-integration: venv infra
	$(WITH_INFRA) $(PY) -m pytest -m "integration"

lint: venv
	$(VENV)/bin/ruff check shared services devtools deploy bench tests
	$(VENV)/bin/ruff format --check shared services devtools deploy bench tests
	$(VENV)/bin/mypy shared services devtools deploy bench
	$(VENV)/bin/lint-imports

# Kill, restart and poison the running system under load, then audit every effect:
# `make chaos` (2,000 applications), `make chaos CHAOS_ARGS=--long` (20,000).
chaos: venv infra migrate
	$(WITH_INFRA) $(PY) -m devtools.chaos $(CHAOS_ARGS)

# The same on a three-node RabbitMQ cluster of its own (devtools/cluster.py: AMQP 5681-5683,
# started for the run and stopped after it unless it runs): kill -9 of a node, a node
# partitioned, the services cut off with the minority, a rolling restart, the service kills;
# reports/chaos-cluster.json. `make chaos-cluster CHAOS_ARGS="--long --seed 3"`: 10,000
# applications, every fault twice. Postgres is `make infra`'s (never restarted here).
chaos-cluster: venv infra
	$(WITH_INFRA) $(PY) -m devtools.chaos --cluster $(CHAOS_ARGS)

# The cluster alone (`python -m devtools.cluster status|kill N|partition N|heal|...`).
cluster-up: venv
	$(PY) -m devtools.cluster up

cluster-down: venv
	$(PY) -m devtools.cluster down

# Re-pin every dependency after editing pyproject.toml.
lock: venv
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q -o requirements.lock

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (figures printed and written to reports/, never asserted):
# `make bench`, `make bench SCENARIO=spike`, `make bench BENCH_ARGS="--rate 500 --count 5000"`.
bench: venv infra
	$(WITH_INFRA) $(PY) -m bench $(if $(SCENARIO),--scenario $(SCENARIO)) $(BENCH_ARGS)
