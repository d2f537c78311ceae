# Two commands set up and run everything on a fresh machine with Python 3 and make:
#   make demo   create .venv, install secateurs (runtime only), run the built-in experiment
#   make test   same, plus the test tools and the Ray extra (its executor is tested), then pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extras for `make test`: dev (pytest, hypothesis, ruff, torch-pruning) and ray, so that the Ray
# executor's test runs instead of skipping. `make test TEST_EXTRAS=dev` leaves Ray out.
TEST_EXTRAS ?= dev,ray

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
