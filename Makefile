# The two commands of the README: `make run` (the embedded demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= test

.PHONY: run test lint typecheck unit bench clean

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

bench: $(VENV)/.installed-test
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
