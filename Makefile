# Two commands set up and run everything on a fresh machine with Python 3 and make:
#   make demo   create .venv, install, run the built-in experiment on the embedded digits data
#   make test   same set-up, then the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Without an NVIDIA GPU, pin the CPU build of torch so pip never pulls the multi-GB CUDA one.
TORCH_CPU ?= torch==2.13.0

.PHONY: demo test install bench lint clean

$(BIN)/secateurs: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing the default torch build"; \
	else \
		echo "No GPU: installing the CPU build ($(TORCH_CPU))"; \
		$(BIN)/python -m pip install -q "$(TORCH_CPU)" || $(BIN)/python -m pip install -q "$(TORCH_CPU)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	@touch $@

install: $(BIN)/secateurs

demo: install
	$(BIN)/secateurs demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
