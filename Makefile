# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck snippet snippet-test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps 'gbstats==0.8.0'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/splitedge serve --data-dir data

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

snippet/node_modules/.installed: snippet/package-lock.json
	cd snippet && npm ci --no-audit --no-fund --silent
	touch $@

snippet-test: snippet/node_modules/.installed
	cd snippet && node --test test/

test: $(STAMP) lint typecheck snippet-test
	$(BIN)/pytest

snippet: snippet/node_modules/.installed
	cd snippet && npm run build

bench: $(STAMP)
	$(BIN)/python bench/edge.py --write
	$(BIN)/python bench/ingest.py --write
	$(BIN)/python bench/stats.py --write
	$(BIN)/python bench/results_query.py --write
	$(BIN)/python bench/agents.py --write

clean:
	rm -rf $(VENV) data
