# corral: `make test` and `make demo` work on a fresh machine with only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint typecheck check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## test: lint, type-check, then run the whole test suite under trio and asyncio
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

## demo: run the main job (40 sandboxed samples under trio, with a live display and a summary)
demo: $(STAMP)
	$(BIN)/corral demo

## bench: run every benchmark side by side with its baseline (JSON lines)
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs/examples
	$(BIN)/ruff format --check src tests benchmarks docs/examples

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
