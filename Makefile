# The two commands of the README: `make run` (the embedded demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= test

.PHONY: run test lint typecheck unit bench bench-quick bench-rss clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

run:
	$(MAKE) --no-print-directory $(VENV)/.installed-base EXTRAS=base
	$(PY) -m weightvault.demo

test: $(VENV)/.installed-test
	@if [ -f scripts/install-test-tools.sh ]; then bash scripts/install-test-tools.sh; fi
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# every row of issue 9's table in one run (installs restic for the peer rows on first use);
# bench-quick: smaller sizes and fewer runs for a loaded machine; bench-rss: peak RSS of a big model
bench: $(VENV)/.installed-test
	$(PY) bench/bench_table.py

bench-quick: $(VENV)/.installed-test
	$(PY) bench/bench_table.py --quick

bench-rss: $(VENV)/.installed-test
	$(PY) bench/bench_table.py --large $(or $(SIZE),16GiB)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
