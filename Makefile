# The project's commands. Everything installs itself: Python 3.11+ and make are enough.
# `uv` comes from the package index into .tools/, the environment into .venv/ from uv.lock.

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# Never let Airflow write into the user's home: commands that need one get a temporary AIRFLOW_HOME.
export AIRFLOW__CORE__LOAD_EXAMPLES := False

PYTEST_ARGS ?=

.PHONY: help env demo test lint format bench clean

help:
	@echo "make demo   - start the emulator and run the request/reply example end to end"
	@echo "make test   - run the whole test suite"
	@echo "make lint   - ruff + mypy on the package"
	@echo "make bench  - run the benchmarks (figures go to benchmarks/RESULTS.md by hand)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --quiet
	@touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python scripts/demo.py

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
