# The two set-up commands of the README:
#   make lab   - create .venv, install grokviz with everything, open the quickstart in JupyterLab
#   make test  - create .venv, install everything, run lint, types and every test
# Both work on a fresh machine; nothing needs installing by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This project's machines carry a local CPU wheel of torch 2.13.0; any other spec pulls gigabytes
# of CUDA packages there. Elsewhere choose your own, e.g. `make lab TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.grokviz-installed
NOTEBOOK ?= notebooks/01_quickstart.ipynb
export PIP_DISABLE_PIP_VERSION_CHECK := 1
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip prints a warning per package for the empty local index folders this machine configures.
QUIET := { grep -v "^WARNING: Location" || true; }

.PHONY: lab test install lint types js-check pytest chromium js-deps bundle clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q "$(TORCH_SPEC)" 2>&1 | $(QUIET)
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]" 2>&1 | $(QUIET)
	$(PY) -c "import grokviz, torch, transformers, polars, anywidget, altair, nbval, playwright"
	touch $(STAMP)

# Debian's chromium for the real-browser widget tests; installed where we can (root with apt-get).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not found and cannot apt-get it: browser tests will be skipped"; fi

# TypeScript toolchain (tsc, esbuild, vitest) for checking and rebuilding the widget bundle.
js-deps:
	@if [ -f js/package.json ]; then cd js && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; }; fi

bundle: js-deps
	cd js && npm run build

lint: install
	$(VENV)/bin/ruff check grokviz tests benchmarks conftest.py
	$(VENV)/bin/ruff format --check grokviz tests benchmarks conftest.py

types: install
	$(VENV)/bin/mypy

js-check: js-deps
	@if [ -f js/package.json ]; then cd js && npm run --silent typecheck && npm run --silent test; fi

# Units and real-browser widget tests, every module's docstring examples, then every notebook top
# to bottom in its small mode.
pytest: install chromium
	$(PY) -m pytest tests
	$(PY) -m pytest --doctest-modules grokviz -p no:cacheprovider -q
	GROKVIZ_SMALL=1 HF_HUB_OFFLINE=1 $(PY) -m pytest notebooks --nbval-lax --nbval-cell-timeout=180 \
	  --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

test: lint types js-check pytest

# Jupyter refuses to start as root unless told; containers and CI machines often run as root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: install
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) $(NOTEBOOK)

clean:
	rm -rf $(VENV) js/node_modules .mypy_cache .ruff_cache .pytest_cache
