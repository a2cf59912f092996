# corral: `make test` and `make demo` work on a fresh machine with only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint typecheck check clean ssh-server

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## test: lint, type-check, then run the whole test suite under trio and asyncio
test: $(STAMP) ssh-server lint typecheck
	$(BIN)/python -m pytest

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
	$(BIN)/ruff check src tests benchmarks docs/examples
	$(BIN)/ruff format --check src tests benchmarks docs/examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
