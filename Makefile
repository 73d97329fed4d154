# ocilab: `make test` and `make lab` set up everything themselves (scripts/setup.sh).
#
#   make test                  system components, Docker engine, .venv, then pytest and nbval
#   make lab ARGS=--no-browser JupyterLab on notebooks/ (extra arguments in ARGS)
#   make reset                 back to the workshop's start: the kit's registries stopped, its images,
#                              containers, workspaces, bundles and registry data removed
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

# What `make reset` removes from the Docker engine: images whose repository matches, and their containers.
RESET_IMAGES ?= ^ocilab-

.PHONY: help setup test lab lint bench clean reset

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

# Registries first (they hold files in the data being removed), then the engine's images and their
# containers, then the learner's workspaces (bundles live there) and the default registry's data.
reset:
	@set -u; \
	workspace="$$($(BIN)/python -c 'from ocilab.present.notebook import workspace_root; print(workspace_root())')"; \
	data="$$($(BIN)/python -c 'from ocilab.operations.registry_server import default_data_dir; print(default_data_dir())')"; \
	for record in "$$data/ocilab-registry.json" $$(find "$$workspace" -name ocilab-registry.json 2>/dev/null); do \
		[ -f "$$record" ] && $(BIN)/ocilab registry down --data "$$(dirname "$$record")"; \
	done; \
	if docker info >/dev/null 2>&1; then \
		images="$$(docker images --format '{{.Repository}}:{{.Tag}}' | awk -v re='$(RESET_IMAGES)' '$$1 ~ re')"; \
		for image in $$images; do \
			containers="$$(docker ps -aq --filter ancestor=$$image)"; \
			[ -n "$$containers" ] && docker rm -f $$containers >/dev/null && echo "reset: removed containers of $$image"; \
			docker rmi $$image >/dev/null && echo "reset: removed image $$image"; \
		done; \
	else \
		echo "reset: no Docker engine answers, so no images to remove"; \
	fi; \
	rm -rf "$$workspace" "$$data" && echo "reset: removed $$workspace and $$data"
