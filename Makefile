# Two commands set up and run everything on a fresh machine with Python 3 and make:
#   make demo   create .venv, install secateurs (runtime only), run the built-in experiment
#   make test   same, plus the test tools and the Ray and agent extras (tested too), then pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extras for `make test`: dev (pytest, hypothesis, ruff, torch-pruning), ray and agent (gymnasium),
# so that the Ray executor's and the CartPole example's tests run instead of skipping.
# `make test TEST_EXTRAS=dev` leaves them out.
TEST_EXTRAS ?= dev,ray,agent

.PHONY: demo test install install-test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, by a script that picks the CPU build unless an NVIDIA GPU works (PyPI's Linux
# torch is the multi-GB CUDA build): see scripts/install_torch.py.
$(VENV)/.torch: $(BIN)/python scripts/install_torch.py
	$(BIN)/python scripts/install_torch.py
	@touch $@

$(VENV)/.runtime: $(VENV)/.torch pyproject.toml
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.test: $(VENV)/.runtime pyproject.toml
	$(BIN)/python -m pip install -q -e ".[$(TEST_EXTRAS)]"
	@touch $@

install: $(VENV)/.runtime

install-test: $(VENV)/.test

demo: install
	$(BIN)/secateurs demo

test: install-test
	$(BIN)/python -m pytest -q

bench: install-test
	$(BIN)/python -m benchmarks

lint: install-test
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
