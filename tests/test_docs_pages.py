"""Every fenced Python block of every page runs as a reader copies it.

A page's blocks, top to bottom, run as one script in a fresh Python process
in an empty folder: no other page's code and no quick start runs before
them, so a page that builds on the quick start repeats the lines it needs.
Pages whose blocks need another process per backend are run by the test
files named in `test_docs.PYTHON_RUN_ELSEWHERE`. Blocks indented under an
admonition, such as the example scripts listed on source-files.md, are
listings of files that their own tests run, not code to copy. (A file of
its own, so that `make test`'s two workers share the docs tests.) The
pages run on torch, whatever the pass's backend (`PAGE_BACKEND`).
"""

import os
import subprocess
import sys

import pytest
from test_docs import PYTHON_RUN_ELSEWHERE
from test_docs import code_blocks
from test_docs import pages

pytestmark = pytest.mark.once
PAGE_BACKEND = "torch"


def page_script(page):
    """A page's Python blocks, top to bottom, as one script."""
    return "\n\n".join(code_blocks(page, "python"))


def run_script(script, directory, name):
    """Runs `script` in a fresh Python process in `directory`."""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=directory,
        # Figures are saved, never shown. torch: the pages are the same on
        # every backend, and torch runs them in half of JAX's time (no
        # compiling: attention-maps 32 s against 74 s on 2 loaded cores).
        env=dict(os.environ, MPLBACKEND="Agg", KERAS_BACKEND=PAGE_BACKEND),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, f"{name}:\n{completed.stderr[-3000:]}"


@pytest.mark.parametrize(
    "page",
    [
        page
        for page in pages()
        if page not in PYTHON_RUN_ELSEWHERE and code_blocks(page, "python")
    ],
)
def test_python_blocks_run_as_copied(page, tmp_path):
    run_script(page_script(page), tmp_path, page)
