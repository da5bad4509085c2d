# The targets the README names. `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
EXTRAS := infra,train,lambda,serve,local,dev
# The install is redone whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
LINT_PATHS := infra training_jobs handlers models mlctl emulator policy tests bench scripts examples

.PHONY: install run plan down lint format typecheck test test-only clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "ml-platform needs Python 3.11 (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $@

## The main job: the whole platform on this machine (`mlctl local up`), then everything stopped.
run: install
	$(BIN)/mlctl local up --stack $(STACK)

plan: install
	$(BIN)/mlctl plan --stack $(STACK)

## Stops what `mlctl local up --keep` left running (or the remains of a failed `up`).
down: install
	$(BIN)/mlctl local down

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

typecheck: install
	$(BIN)/mypy infra training_jobs handlers models mlctl emulator policy

## Everything CI runs: lint, types, then the whole test suite.
test: lint typecheck test-only

test-only: install
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build .mlctl-local *.egg-info
