# ocilab: `make test` and `make lab` set up everything themselves (scripts/setup.sh).
#
#   make test                  system components, Docker engine, .venv, then pytest and nbval
#   make lab ARGS=--no-browser JupyterLab on notebooks/ (extra arguments in ARGS)
#   make lint | bench | clean

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Notebooks' shell cells (!ocilab ...) and subprocesses find the kit's commands first.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Property-test examples are cached with the other local state, not in the work tree.
export HYPOTHESIS_STORAGE_DIRECTORY := $(CURDIR)/.lab/hypothesis
ARGS ?=
PYTEST_ARGS ?=
# JupyterLab refuses to run as root unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
SANITIZE := $(wildcard notebooks/sanitize.cfg)
BENCHES := $(wildcard bench/*.py)

.PHONY: help setup test lab lint bench clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

setup:
	bash scripts/setup.sh

# Both suites always run; the target fails when either fails. "No tests collected" (pytest exit 5)
# is a failure for the main suite; nbval runs only once notebooks exist.
test: setup
	@status=0; \
	$(BIN)/pytest tests $(PYTEST_ARGS) || status=$$?; \
	if [ -n "$(NOTEBOOKS)" ]; then \
		OCILAB_PROGRESS=off $(BIN)/pytest --nbval --nbval-current-env $(if $(SANITIZE),--nbval-sanitize-with $(SANITIZE)) \
			notebooks $(PYTEST_ARGS) || status=$$?; \
	else \
		echo "make: no notebooks yet, nbval skipped"; \
	fi; \
	exit $$status

lab: setup
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir=notebooks $(ARGS)

lint: setup
	@status=0; \
	$(BIN)/ruff check ocilab || status=$$?; \
	$(BIN)/mypy ocilab || status=$$?; \
	exit $$status

bench: setup
	@status=0; \
	for script in $(BENCHES); do \
		echo "== $$script"; \
		$(BIN)/python $$script || status=$$?; \
	done; \
	if [ -z "$(BENCHES)" ]; then echo "make: no benchmarks in bench/ yet"; fi; \
	exit $$status

clean:
	rm -rf $(VENV) .lab
