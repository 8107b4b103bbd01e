"""The documentation under docs/ (and the README it includes).

- The README's quick start runs (per backend) and its model loads back.
- Every Python block of a page runs as copied, in a fresh process
  (tests/test_docs_pages.py); blocks that need another process per backend
  are run by the test named in `PYTHON_RUN_ELSEWHERE`.
- Every shell block is either run by a named test (`SHELL_RUN_ELSEWHERE`)
  or exempt with its reason (`SHELL_EXEMPT`: clusters, GPUs, make targets).
- The docstring examples of the reference run, each in a namespace of its
  own (they import what they use), with no doctest directive to show.
- The executed notebook the site shows has the source notebook's cells.
"""

import doctest
import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOK = ROOT / "notebooks" / "SelfAttention_1x1_Conv2D.ipynb"
EXECUTED_NOTEBOOK = DOCS / "notebook.ipynb"

# Pages whose Python blocks run in another process, by this test file (which
# reads them from the page).
PYTHON_RUN_ELSEWHERE = {
    "guide/pytorch.md": "tests/test_torch_interop.py",
    # Per backend, the blocks whose first line names it.
    "guide/deploying.md": "tests/test_export.py",
}

# Shell blocks, by page and first command line, run by a test file (which
# runs the same script).
SHELL_RUN_ELSEWHERE = {
    (
        "guide/distributed.md",
        "python examples/distributed_training.py --backend tensorflow",
    ): "tests/test_distributed.py",
    (
        "guide/distributed.md",
        "python examples/multiprocess_jax.py --coordinator localhost",
    ): "tests/test_multiprocess.py",
    ("guide/distributed.md", "torchrun --standalone"): (
        "tests/test_multiprocess.py"
    ),
    # The README's install section, on the Home and Install pages.
    **{
        (page, command): "tests/test_install.py"
        for page in ("index.md", "install.md")
        for command in ('pip install ".[jax]"', "pip install build")
    },
}

# Shell blocks no test runs, and why.
SHELL_EXEMPT = {
    ("guide/deploying.md", 'pip install ".[export]"'): (
        "installs the export tools from the package index; the `export` "
        "extra is part of `dev`, which CI installs"
    ),
    ("install.md", "git clone"): "needs the repository or archive the "
    "reader was given (the project has no public address); "
    "tests/test_install.py runs the install commands in a copy of the source",
    ("index.md", "make demo"): "make targets: CI runs `make test`; "
    "tests/test_demo.py runs the demo",
    (
        "guide/distributed.md",
        "python examples/multiprocess_jax.py --coordinator 10.0.0.1",
    ): "needs two hosts; tests/test_multiprocess.py runs the one-host lines",
    ("guide/distributed.md", "torchrun --nnodes 2"): "needs two hosts; "
    "tests/test_multiprocess.py runs the one-host line",
    ("guide/distributed.md", "python examples/multiworker_tensorflow.py"): (
        "needs two hosts; tests/test_multiprocess.py runs two processes on "
        "one host"
    ),
    ("development.md", "python benchmarks/gpu/gpu.py"): "needs a CUDA GPU; "
    "tests/test_benchmarks_gpu.py runs its CPU smoke mode",
    ("development.md", "benchmarks/gpu/prepare_gpu_payload.sh"): "prepares and "
    "runs the GPU run on another machine; tests/test_run_gpu.py runs "
    "run_gpu.sh --smoke",
    ("development.md", "make docs"): "make targets: CI runs `make docs`; "
    "this file builds the site, checks the notebook copy and draws the plots",
}

# The API reference: one page per concept, each `::: name` an entry.
REFERENCE_PAGES = sorted(DOCS.glob("reference*.md"))
REFERENCE_NAMES = [
    name
    for page in REFERENCE_PAGES
    for name in re.findall(r"^::: (\S+)$", page.read_text(), re.M)
]

SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"$', re.M)
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def expand_snippets(text):
    """The page as the site shows it: `--8<--` lines replaced by the file or
    the marked section they name (pymdownx.snippets)."""

    def include(match):
        source = (ROOT / match[1]).read_text()
        if match[2]:
            start = f"<!-- --8<-- [start:{match[2]}] -->\n"
            end = f"<!-- --8<-- [end:{match[2]}] -->"
            source = source.split(start, 1)[1].split(end, 1)[0]
        return source

    return SNIPPET.sub(include, text)


def blocks_of(text, language):
    return [code for lang, code in BLOCK.findall(text) if lang == language]


def code_blocks(page, language):
    return blocks_of(expand_snippets((DOCS / page).read_text()), language)


def pages():
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def quick_start_code():
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1]
    language, code = BLOCK.search(section).groups()
    assert language == "python"
    return code


def first_command(block):
    return next(
        line.strip()
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    directory = tmp_path_factory.mktemp("quick_start")
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        keras.utils.set_random_seed(0)
        namespace = {}
        exec(compile(quick_start_code(), "quick start", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return directory, namespace


def test_quick_start_runs(quick_start):
    directory, namespace = quick_start
    assert namespace["model"].output_shape == (None, 10)
    assert (directory / "model.keras").exists()
    loaded = keras.saving.load_model(directory / "model.keras")
    np.testing.assert_allclose(
        loaded.predict(namespace["x"][:2], verbose=0),
        namespace["model"].predict(namespace["x"][:2], verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("page, test_file", PYTHON_RUN_ELSEWHERE.items())
def test_python_blocks_run_elsewhere_are_read_by_their_test(page, test_file):
    assert code_blocks(page, "python"), page
    assert page in (ROOT / test_file).read_text()


def test_every_readme_python_block_is_on_a_page():
    on_pages = {
        code for page in pages() for code in code_blocks(page, "python")
    }
    readme = blocks_of((ROOT / "README.md").read_text(), "python")
    assert readme and set(readme) <= on_pages


def test_every_shell_block_is_run_or_exempt():
    found = {
        (page, first_command(block))
        for page in pages()
        for block in code_blocks(page, "bash")
    }
    listed = {
        (page, command)
        for page, command in [*SHELL_RUN_ELSEWHERE, *SHELL_EXEMPT]
    }
    # Keys hold the start of the first command line.
    matched = {
        key
        for key in listed
        for page, command in found
        if page == key[0] and command.startswith(key[1])
    }
    unlisted = {
        (page, command)
        for page, command in found
        if not any(
            page == key[0] and command.startswith(key[1]) for key in listed
        )
    }
    assert not unlisted, "list these shell blocks in this test file"
    assert matched == listed, f"stale entries: {listed - matched}"
    for (_, command), test_file in SHELL_RUN_ELSEWHERE.items():
        script = command.split()[1]
        assert script in (ROOT / test_file).read_text()


def resolve(dotted):
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def examples(dotted):
    """The fenced Python blocks of a reference entry's docstring."""
    return blocks_of(inspect.getdoc(resolve(dotted)) or "", "python")


@pytest.mark.once
@pytest.mark.parametrize(
    "dotted", [name for name in REFERENCE_NAMES if examples(name)]
)
def test_docstring_examples_run(dotted, tmp_path, monkeypatch):
    """Each example, as the reference shows it, in a namespace of its own:
    it imports what it uses. `>>>` examples run as doctests (their output
    is checked), others as plain code."""
    monkeypatch.chdir(tmp_path)
    for code in examples(dotted):
        assert "doctest:" not in code, "the site would show the directive"
        if ">>>" not in code:
            exec(compile(code, dotted, "exec"), {})
            continue
        test = doctest.DocTestParser().get_doctest(code, {}, dotted, None, 0)
        assert test.examples
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.failures == 0
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def test_executed_notebook_matches_the_notebook():
    nbformat = pytest.importorskip("nbformat")
    source = nbformat.read(NOTEBOOK, as_version=4)
    executed = nbformat.read(EXECUTED_NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in executed.cells] == [
        (c.cell_type, c.source) for c in source.cells
    ], "run `make docs-notebook` to regenerate docs/notebook.ipynb"
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(
        range(1, len(code) + 1)
    )
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.once
def test_bench_plots_draw_the_pages_images(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location(
        "bench_plots", ROOT / "benchmarks" / "cpu" / "plots.py"
    )
    plots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plots)
    assert plots.main(["--output-dir", str(tmp_path)]) == 0
    drawn = sorted(path.name for path in tmp_path.iterdir())
    assert drawn == ["bench_fwd.png", "bench_fwd_bwd.png"]
    page = (DOCS / "benchmarks.md").read_text()
    for name in drawn:
        assert f"](images/{name})" in page
        assert (DOCS / "images" / name).is_file()
    # Memory is the growth over the RSS before the step where recorded,
    # else the process's peak.
    record = {"peak_rss_bytes": 3 * plots.GIB}
    assert plots.memory_gib(record) == (3.0, False)
    record["rss_before_step_bytes"] = plots.GIB
    assert plots.memory_gib(record) == (2.0, True)


@pytest.mark.once
def test_make_docs_without_the_extra_names_it(tmp_path):
    # A Python that has none of the site's tools (it fails every import).
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    completed = subprocess.run(
        ["make", "-o", ".venv/.installed", f"BIN={tmp_path}", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert 'pip install -e ".[docs]"' in completed.stderr
