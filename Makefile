# PipeSentinel developer loop. `make demo` and `make test` are the two commands in the README.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUBPACKAGES := ingest detection plans simulation api hardware
SUBPACKAGE_RE := ingest|detection|plans|simulation|api|hardware
DEBIAN_SERVICES := mosquitto influxdb
DEBIAN_RENDER := libegl1 libegl-mesa0 libgl1-mesa-dri
CONSOLE := api/console
CONSOLE_MODULES := $(CONSOLE)/node_modules/.installed

.PHONY: help venv demo test test-all check format lint typecheck bench services render node clean

help:
	@echo "make demo   - set up .venv and run the demo (embedded broker, SQLite)"
	@echo "make test   - install mosquitto/influxd, EGL and the console's npm packages if missing,"
	@echo "              then run the tests"
	@echo "make check  - ruff format check, ruff lint, mypy --strict"
	@echo "make bench  - benchmarks, JSON in bench/results/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=69" wheel
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pipesentinel demo $(DEMO_ARGS)

# Real services for the tests: Debian's mosquitto and influxdb. Installed when missing and we
# are root; otherwise the tests that need them skip (or fail with PIPESENTINEL_REQUIRE_SERVICES=1).
services:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "NOTE: missing$$missing; run as root or: sudo apt-get install$$missing"; \
	    echo "      tests that need these services will be skipped."; \
	  fi; \
	fi

# Off-screen 3D rendering (simulation/render.py): VTK renders headless through EGL, which needs
# Mesa's EGL and DRI drivers (Debian packages below). Installed when missing and we are root.
render:
	@if command -v dpkg >/dev/null 2>&1; then \
	  missing=""; \
	  for package in $(DEBIAN_RENDER); do \
	    dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = "0" ]; then \
	      echo "installing Debian packages:$$missing"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else \
	      echo "NOTE: missing$$missing; run as root or: sudo apt-get install$$missing"; \
	      echo "      off-screen rendering (tests/simulation/test_render.py) will fail."; \
	    fi; \
	  fi; \
	fi

# The console's npm packages (api/console/package-lock.json: the Khronos glTF validator the tests
# run): Node.js from Debian when missing, then `npm ci` whenever the lock file is newer than the
# installed node_modules.
node: $(CONSOLE_MODULES)

$(CONSOLE_MODULES): $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages: nodejs npm"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else \
	    echo "NOTE: node/npm missing; run as root or: sudo apt-get install nodejs npm"; \
	    echo "      the glTF validator test will be skipped."; \
	  fi; \
	fi
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	fi

test: $(STAMP) services render node
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) services render node
	$(PY) -m pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# mypy cannot follow setuptools' editable import hook, so it checks a throw-away tree of
# symlinks laid out as the installed package (pipesentinel/ingest -> ingest/, ...), and the
# paths in its messages are mapped back to the real files.
typecheck: $(STAMP)
	@tree=$$(mktemp -d); trap 'rm -rf "$$tree"' EXIT; \
	mkdir -p "$$tree/pipesentinel"; \
	for f in core/*.py core/py.typed; do ln -s "$(CURDIR)/$$f" "$$tree/pipesentinel/"; done; \
	for d in $(SUBPACKAGES); do ln -s "$(CURDIR)/$$d" "$$tree/pipesentinel/$$d"; done; \
	MYPYPATH="$$tree" $(VENV)/bin/mypy --cache-dir "$(CURDIR)/.mypy_cache" "$$tree/pipesentinel" tests bench \
	  | sed -E "s#^$$tree/pipesentinel/($(SUBPACKAGE_RE))/#\1/#; s#^$$tree/pipesentinel/#core/#"

check: lint typecheck

bench: $(STAMP) services render
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache var bench/results \
	  $(CONSOLE)/node_modules
