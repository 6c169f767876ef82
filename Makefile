# Everything a fresh machine needs, installed by the project's own files and cached outside
# the checkout (keyed by version) so a second run is fast.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/aigc-edge
# Debian's python3.11 when the machine has it: the interpreter the worker image ships, and with
# libpython linked in it runs the simulator ~12 % faster than a source build with --enable-shared.
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3)
VENV_KEY := $(shell (cat pyproject.toml; $(PYTHON) -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
VENV ?= $(CACHE)/venv-$(VENV_KEY)
BIN := $(VENV)/bin
export AIGC_EDGE_CACHE := $(CACHE)
export PATH := $(BIN):$(PATH)
export MPLBACKEND := Agg

.PHONY: install components demo test lint unit integration e2e bench clean-cache manifests

# Dependencies are installed once per pyproject version; the checkout itself is (re)linked on
# every run because CI tests a fresh clone in another folder with the same cached venv.
$(VENV)/.deps-installed: pyproject.toml
	@echo "==> creating $(VENV) (first run downloads torch, diffusers, onnxruntime: several minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off -e '.[operator,worker,train,dev]'
	touch $@

# The relink's setuptools warnings go to a log, shown only if it fails.
install: $(VENV)/.deps-installed
	@$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . >$(VENV)/relink.log 2>&1 || { cat $(VENV)/relink.log; exit 1; }

components:
	bash hack/build-components.sh

demo: install components
	$(BIN)/aigc-edge demo

lint: install
	$(BIN)/ruff check policy operator sd-worker tests bench

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

e2e: install components
	$(BIN)/pytest -q -m e2e tests/e2e

# The whole suite: lint, unit, integration and the end-to-end lane on the real control plane.
test: install components lint
	$(BIN)/pytest -q --durations=15 tests

bench: install
	$(BIN)/aigc-edge bench --scenario eat-reference --policies random,round-robin,least-loaded,eft,eat-greedy --episodes 5 --seed 1 --out bench/out

# manifests/ is rendered from the Helm chart (tests/unit/test_chart.py fails when it is stale).
manifests: components
	bash hack/render-manifests.sh

clean-cache:
	rm -rf $(CACHE)
