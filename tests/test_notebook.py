"""Executes the companion notebook end to end (one backend pass only)."""

import os
import pathlib

import keras
import pytest

import conv_self_attention

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
KernelManager = pytest.importorskip("jupyter_client").KernelManager

NOTEBOOK = (
    pathlib.Path(__file__).parents[1]
    / "notebooks"
    / "SelfAttention_1x1_Conv2D.ipynb"
)


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], cell.source[:60]
            assert cell.execution_count is None


@pytest.mark.once
def test_notebook_runs(tmp_path, monkeypatch):
    # The kernel is a new process: give it this process's backend and
    # package, whether installed or run from the source tree.
    source_root = pathlib.Path(conv_self_attention.__file__).parents[1]
    path = os.pathsep.join(
        filter(None, [str(source_root), os.environ.get("PYTHONPATH")])
    )
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel talks over Unix sockets in tmp_path: TCP ports picked for
    # it, then released until it binds them, could be taken meanwhile.
    kernel = KernelManager(
        kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel")
    )
    client = nbclient.NotebookClient(
        notebook,
        km=kernel,
        timeout=600,
        # Starting a kernel can take minutes on a loaded 2-core machine.
        startup_timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
