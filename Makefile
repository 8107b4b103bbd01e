# Two set-up commands: `make demo` and `make test`. Both create .venv first.
# `make lint` checks the code with ruff (check only, no reformatting).
# `make docs` builds the documentation site into site/ (strict), `make
# docs-serve` serves it locally; `make docs-notebook` re-executes the notebook
# into the copy the site shows, `make docs-figures` reruns the demo for the
# site's figures, `make bench-plots` redraws the benchmark plots.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BACKENDS := tensorflow jax torch
# Backend-independent or expensive tests (marked `once`) run in this pass only.
ONCE_BACKEND := jax
# Two pytest-xdist workers, a test file each at a time (module fixtures run
# once): most of the JAX pass waits on compilers and subprocesses, so two
# workers on 2 cores took it from 714 s to 463 s and TensorFlow's from 186 s
# to 104 s (torch's, 70 s, barely changes). GPUs are shared by the workers:
# neither JAX nor TensorFlow may take the whole GPU's memory up front.
XDIST := -n 2 --dist loadfile
TEST_ENV := XLA_PYTHON_CLIENT_PREALLOCATE=false TF_FORCE_GPU_ALLOW_GROWTH=true
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: venv test test-meta lint demo bench bench-gpu bench-plots docs \
	docs-serve docs-notebook docs-figures clean

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
	  $(TEST_ENV) KERAS_BACKEND=$$backend $(BIN)/python -m pytest -m "$$marker" \
	    $(XDIST) $(PYTEST_ARGS) || status=1; \
	done; exit $$status

# A stand-in for a GPU on a CPU: the `meta_device` tests with Keras' torch
# device set to `meta` (tensors with devices, shapes and dtypes, no values),
# which fails where a test or kernel mixes a CPU tensor into Keras' device.
test-meta: venv
	KERAS_BACKEND=torch KERAS_TORCH_DEVICE=meta $(BIN)/python -m pytest \
	  -m meta_device $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

# JAX unless KERAS_BACKEND says otherwise: the backend of the published runs
# and of the measured duration (README).
demo: venv
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} TF_CPP_MIN_LOG_LEVEL=3 \
	  $(BIN)/python -m conv_self_attention.demo $(DEMO_ARGS)

# The CPU benchmark (benchmarks/README.md): the table lands in
# benchmarks/results/summary.md, the measurements beside it as JSON.
bench: venv
	$(BIN)/python benchmarks/cpu/attention.py --backend tensorflow --sizes 16 32 64 128
	$(BIN)/python benchmarks/cpu/attention.py --backend jax --sizes 16 32 64 128
	$(BIN)/python benchmarks/cpu/attention.py --backend torch --sizes 16 32 64 128
	$(BIN)/python benchmarks/common/tables.py
	@echo "The table: benchmarks/results/summary.md"

# On a CUDA machine with torch and JAX (not .venv: its JAX is the CPU
# build): a preflight, the checked benchmark's headline cases, then the
# GPU-specific tests, in one call, with the payload .gpu/ that
# benchmarks/gpu/prepare_gpu_payload.sh makes (docs/development.md).
bench-gpu:
	PYTHON=$(PYTHON) benchmarks/gpu/run_gpu.sh

# The site's tools come with the `docs` extra (which `dev` includes); say so
# instead of failing on a missing module.
DOCS_CHECK = $(BIN)/python -c "import mkdocs, material, mkdocstrings_handlers.python, mkdocs_jupyter, mkdocs_glightbox" 2>/dev/null || { echo 'make docs needs the `docs` extra: pip install -e ".[docs]" (or ".[dev]")' >&2; exit 1; }
# Material for MkDocs prints a banner about its successor on every build.
DOCS_ENV = NO_MKDOCS_2_WARNING=1

docs: venv
	@$(DOCS_CHECK)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict

docs-serve: venv
	@$(DOCS_CHECK)
	$(DOCS_ENV) $(BIN)/mkdocs serve --strict

# The site shows an executed copy of the notebook (the committed notebook has
# no outputs); a test checks that the copy's cells match the notebook's.
docs-notebook: venv
	KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=src $(BIN)/python -m nbconvert \
	  --to notebook --execute notebooks/SelfAttention_1x1_Conv2D.ipynb \
	  --output-dir docs --output notebook.ipynb
	$(BIN)/python -c "$$DROP_STDERR"

# TensorFlow's start-up log lines (Keras imports it when installed) are not
# part of what the notebook shows.
define DROP_STDERR
import nbformat
path = "docs/notebook.ipynb"
notebook = nbformat.read(path, as_version=4)
for cell in notebook.cells:
    if cell.cell_type == "code":
        cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
nbformat.write(notebook, path)
endef
export DROP_STDERR

# The demo's figures that the Home and attention-map pages show: a full
# demo run (minutes), then a copy of the figures into docs/images/demo/.
DOCS_FIGURES := classifier_curves attention_classifier_first \
	attention_classifier_intermediate attention_generator \
	attention_discriminator_real gan_gamma attention_statistics_gan \
	attention_statistics_classifier_intermediate \
	attention_distance_classifier_intermediate attention_lookup
docs-figures: venv
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m conv_self_attention.demo --backend jax \
	  --output-dir demo_output
	mkdir -p docs/images/demo
	for name in $(DOCS_FIGURES); do cp demo_output/$$name.png docs/images/demo/; done

# The Benchmarks page's plots and every table generated from
# benchmarks/results/*.json (no measuring).
bench-plots: venv
	$(BIN)/python benchmarks/cpu/plots.py
	$(BIN)/python benchmarks/common/tables.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache site .cache
