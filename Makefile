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
	$(BIN)/lint-imports

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

# Every benchmark, then the summary table of bench/RESULTS.md (about 10 minutes on 2 cores).
# wrk is a system package: the target says what to install instead of installing it.
bench:
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install -y wrk" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data
