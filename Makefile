# Two set-up commands: `make demo` and `make test`. Both create .venv first.
# `make lint` checks the code with ruff (check only, no reformatting).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BACKENDS := tensorflow jax torch
# Backend-independent or expensive tests (marked `once`) run in this pass only.
ONCE_BACKEND := jax
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: venv test lint demo bench bench-gpu clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev,tensorflow-cpu,jax,torch]"
	touch $@

test: venv
	@status=0; for backend in $(BACKENDS); do \
	  if [ "$$backend" = "$(ONCE_BACKEND)" ]; then marker=""; else marker="not once"; fi; \
	  echo "=== KERAS_BACKEND=$$backend ==="; \
	  KERAS_BACKEND=$$backend $(BIN)/python -m pytest -m "$$marker" $(PYTEST_ARGS) || status=1; \
	done; exit $$status

lint: venv
	$(BIN)/ruff check .

demo: venv
	$(BIN)/python -m conv_self_attention.demo $(DEMO_ARGS)

bench: venv
	$(BIN)/python benchmarks/attention.py --backend tensorflow --sizes 16 32 64 128
	$(BIN)/python benchmarks/attention.py --backend jax --sizes 16 32 64 128
	$(BIN)/python benchmarks/attention.py --backend torch --sizes 16 32 64 128

# On a CUDA machine whose Python has Keras and GPU builds of the backends
# (not .venv: its JAX is the CPU build); docs/guide/gpu.md covers one without
# Keras.
bench-gpu:
	PYTHONPATH=src $(PYTHON) benchmarks/gpu.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
