# corral: `make test` and `make demo` work on a fresh machine with only python3.
#
# Another interpreter: `make test PYTHON=python3.12` (or a path) sets up and uses a venv of
# its own, .venv-<version>, so .venv is left alone. `make test-3.13` runs the suite under
# Python 3.13, found under pyenv or on PATH (or give PYTHON313=/path/to/python3.13).
PYTHON ?= python3
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV   ?= $(if $(filter command line,$(origin PYTHON)),.venv-$(PYVER),.venv)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYENV_ROOT ?= $(HOME)/.pyenv
PYTHON313  ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.13*/bin/python3.13) \
                          $(shell command -v python3.13 2>/dev/null))

.PHONY: test suite test-3.13 docs demo bench lint typecheck check clean ssh-server

$(STAMP): pyproject.toml
	@test -n "$(PYVER)" || { echo "$(PYTHON) is not a Python interpreter" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## test: lint, type-check, then run the whole test suite under trio and asyncio
# The suite includes the strict docs build (tests/test_docs.py), so a broken link or
# reference in the docs fails it.
test: $(STAMP) ssh-server lint typecheck suite

## suite: the test suite alone (pytest), in $(VENV)
suite: $(STAMP) ssh-server
	$(BIN)/python -m pytest

## test-3.13: the whole test suite under Python 3.13, in .venv-3.13
test-3.13:
	@test -n "$(PYTHON313)" || { echo "no python3.13 found: give PYTHON313=/path/to/python3.13" >&2; exit 1; }
	$(MAKE) suite PYTHON=$(PYTHON313)

## docs: build the documentation site (narrative pages and API reference) into site/
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

## demo: run the main job (40 sandboxed samples under trio, with a live display and a summary)
demo: $(STAMP)
	$(BIN)/corral demo

## bench: run every benchmark side by side with its baseline (JSON lines)
bench: $(STAMP) ssh-server
	@for b in benchmarks/bench_*.py; do PYTHONPATH=$(CURDIR) $(BIN)/python $$b || exit 1; done

## ssh-server: install OpenSSH's sshd and sudo (as root) for the SSH sandbox tests and benchmarks
# Without root, only a notice: the SSH tests then skip (CI sets CORRAL_REQUIRE_SSH=1 and fails).
# The tests run their own sshd on a free loopback port; a system sshd the package may start
# on port 22 does not disturb them.
ssh-server:
	@if [ -x /usr/sbin/sshd ] && command -v sudo >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing openssh-server and sudo for the SSH sandbox tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server sudo; \
	else \
		echo "note: openssh-server or sudo missing and not root; the SSH sandbox tests will skip"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs/examples docs/reference
	$(BIN)/ruff format --check src tests benchmarks docs/examples docs/reference
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

clean:
	rm -rf .venv .venv-3.* .mypy_cache .ruff_cache .pytest_cache site
