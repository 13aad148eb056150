# recsys — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Constraints also apply inside isolated build environments (DeepSpeed builds from an sdist).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install test test-fast demo lint clean

install: $(STAMP)

# pip's output goes to $(VENV)/install.log (its last 40 lines are shown if it fails): the console stays short.
# torch goes first, from the constraints, so nothing later resolves a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@echo "installing into $(VENV) (log: $(VENV)/install.log) ..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install -q --upgrade pip setuptools wheel \
	  && $(PY) -m pip install -q -c constraints.txt "torch==2.13.0" \
	  && $(PY) -m pip install -q -c constraints.txt -e ".[test]"; } > $(VENV)/install.log 2>&1 \
	  || { tail -n 40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)
	@echo "installed."

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (end-to-end jobs, sweeps, clusters), <= 5 min.
test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# make demo DEMO_ARGS=--verbose (every log line too) | --quiet (only the summary and errors)
demo: install
	$(VENV)/bin/recsys demo $(DEMO_ARGS)

# ruff (lint + format), the layer contracts of pyproject.toml ([tool.importlinter]) and mypy ([tool.mypy]); CI runs it.
lint: install
	$(VENV)/bin/ruff check recsys jobs tests benchmarks
	$(VENV)/bin/ruff format --check recsys jobs tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
