# Safe Report Drop Box — developer entry points.
#   make venv   create/refresh .venv (editable install with the [test] extra)
#   make run    run the server in dev mode with demo keys (python -m dropbox_server.demo)
#   make test   run the test suite
#   make lint   ruff + mypy --strict
#   make bench  run the benchmarks (results go to benchmarks/results/, git-ignored);
#               make bench BENCH_ARGS=--quick for a smoke run

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp
PKGS   := dropbox_envelope dropbox_questionnaire dropbox_server client_cli
BENCH  ?= benchmarks/run.py
BENCH_ARGS ?=

# The editable install maps only the packages that exist when it runs, so it is
# redone when pyproject.toml changes or when a package's __init__.py appears/changes.
PKG_INITS := $(wildcard $(addsuffix /__init__.py,$(PKGS)))

.PHONY: venv run test lint bench

venv: $(STAMP)

$(STAMP): pyproject.toml $(PKG_INITS)
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -e '.[test]'
	@touch $(STAMP)

run: venv
	$(VPY) -m dropbox_server.demo

test: venv
	$(VPY) -m pytest -q

lint: venv
	$(VPY) -m ruff check .
	$(VPY) -m mypy --strict $(addprefix -p ,$(PKGS))

bench: venv
	@test -f $(BENCH) || { echo "bench: $(BENCH) not found (override with BENCH=...)" >&2; exit 1; }
	$(VPY) $(BENCH) $(BENCH_ARGS)
