# Two commands: `make run` (the platform, embedded) and `make test` (against PostgreSQL and Redis).
# `make test-fast`: the in-process tests only.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# llama-cpp-python builds from source; the native build uses CPU instructions some kernels do not
# enable and crashes on first use, so every build (and pip's wheel cache) is the portable one.
export CMAKE_ARGS := -DGGML_NATIVE=OFF

STAMP := $(VENV)/.installed
# mypy's Django plugin imports the settings: in the embedded mode, so it needs no database, Redis or secrets.
MYPY := env -u DATABASE_URL -u REDIS_URL $(BIN)/mypy

.PHONY: install run test test-fast lint format browser clean bench chaos integrations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt worker/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt -e './worker[llama]'
	touch $@

install: $(STAMP)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Embedded mode: one daphne process (the lease reaper runs in it). With REDIS_URL set runlocal also starts
# a Celery worker and Celery beat; in production run `celery -A sogni_platform beat` next to the workers.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py runlocal --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MYPY)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install browser
	$(BIN)/python -m tests.support.services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MYPY)
	$(BIN)/pytest $(PYTEST_ARGS)

# Day-to-day: the tests that start no server or worker processes, no browser and no in-process llama.cpp
# (still against PostgreSQL and Redis, whose test database is kept between runs); no ruff or mypy.
# CI runs everything through `make test`.
test-fast: install
	$(BIN)/python -m tests.support.services
	$(BIN)/pytest -m "not e2e and not browser and not engine" --reuse-db $(PYTEST_ARGS)

# Benchmarks (docs/performance.md): the platform against the engine alone; BENCH_ARGS=--quick for a smoke run.
# New runs go to bench/results/runs/ (ignored); bench/results/baseline* is the published baseline.
bench: install
	$(BIN)/python -m bench.run --server uvicorn $(BENCH_ARGS)
	$(BIN)/python -m bench.run --server daphne --no-llama $(BENCH_ARGS)

# Chaos suite (docs/operations.md "Measured under faults"): Redis killed and frozen, the Celery worker and
# the server process killed under 16 streams, racing Stripe events; CHAOS_ARGS=--fast for the quick ones.
# Needs PostgreSQL on 127.0.0.1 and redis-server on the PATH (it starts its own); results in bench/results/runs/.
chaos: install
	$(BIN)/python -m chaos.run $(CHAOS_ARGS)

# Real third-party clients against the platform (docs/integrations/): Open WebUI (its own virtualenv; the
# first install takes several minutes), the OpenAI Agents SDK, LangChain and LiteLLM (another virtualenv),
# then `python -m integrations.run`: `make run` in a temporary data folder, PASS/FAIL per client.
# Not part of `make test`. INTEGRATIONS_ARGS passes arguments, e.g. INTEGRATIONS_ARGS="--only open-webui".
INTEGRATIONS := .integrations
OPEN_WEBUI_VERSION := 0.12.4
# Open WebUI pulls in PyTorch for local embeddings it does not use here: the CPU build is a tenth of the size.
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(INTEGRATIONS)/open-webui/.installed:
	$(PYTHON) -m venv $(INTEGRATIONS)/open-webui
	$(INTEGRATIONS)/open-webui/bin/pip install --quiet --upgrade pip
	$(INTEGRATIONS)/open-webui/bin/pip install --quiet --retries 0 --extra-index-url $(TORCH_INDEX) '$(TORCH_SPEC)'
	$(INTEGRATIONS)/open-webui/bin/pip install --quiet '$(TORCH_SPEC)' 'open-webui==$(OPEN_WEBUI_VERSION)'
	touch $@

$(INTEGRATIONS)/clients/.installed: integrations/requirements-clients.txt
	$(PYTHON) -m venv $(INTEGRATIONS)/clients
	$(INTEGRATIONS)/clients/bin/pip install --quiet -r integrations/requirements-clients.txt
	touch $@

integrations: install $(INTEGRATIONS)/open-webui/.installed $(INTEGRATIONS)/clients/.installed
	$(BIN)/python -m integrations.run $(INTEGRATIONS_ARGS)

clean:
	rm -rf $(VENV) data $(INTEGRATIONS)
