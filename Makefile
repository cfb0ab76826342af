# The two commands of the README: `make run` and `make test`. Both set up .venv first:
# `make run` with the server's runtime dependencies only, `make test` adds the test tools
# and the agent SDK (clients/python), which the suite runs against the real server.
# `make check` is the quick loop: everything `make test` runs except the tests marked slow.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
TOOLS := $(VENV)/.installed
SLOW := browser or soak or server or bench or simulation

.PHONY: run test check lint typecheck imports snippet snippet-test bench clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(TOOLS): $(RUNTIME) clients/python/pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]' -e ./clients/python
	$(BIN)/pip install --quiet --no-deps 'gbstats==0.8.0'
	touch $(TOOLS)

run: $(RUNTIME)
	$(BIN)/splitedge serve --data-dir data

lint: $(TOOLS)
	$(BIN)/ruff check src tests bench clients/python examples
	$(BIN)/ruff format --check src tests bench clients/python examples

typecheck: $(TOOLS)
	$(BIN)/mypy

imports: $(TOOLS)
	$(BIN)/lint-imports

snippet/node_modules/.installed: snippet/package-lock.json
	cd snippet && npm ci --no-audit --no-fund --silent
	touch $@

snippet-test: snippet/node_modules/.installed
	cd snippet && node --test test/

test: $(TOOLS) lint typecheck imports snippet-test
	$(BIN)/pytest

check: $(TOOLS) lint typecheck imports snippet-test
	$(BIN)/pytest -n auto -m "not ($(SLOW))"

snippet: snippet/node_modules/.installed
	cd snippet && npm run build

# Every benchmark, then the summary table of bench/RESULTS.md (about 10 minutes on 2 cores).
# wrk is a system package: the target says what to install instead of installing it.
bench:
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install -y wrk" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(TOOLS)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data
