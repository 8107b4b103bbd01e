"""Models holding the layer, exported with `export_model` (Keras'
`model.export` after the package's checks; on JAX with the chunked
kernel's export form), run in their own
runtime (`export_runner.py`, a process without Keras or the package) with
the Keras model's output, at batch 2 and 1 through one artifact whose
batch was left dynamic.

Every format Keras offers on this backend (issue 22's scope: TensorFlow to
SavedModel, ONNX, LiteRT; JAX to SavedModel, ONNX; torch to ONNX and
`format="torch"`) with `auto` at 128x128 (a large map: TensorFlow and
JAX trace `chunked` with its blocks), plus each format's answer for
unknown height and width, and the guide's examples (Keras' own
`model.export`, as is `test_export_pooling.py`). Every kernel in every
format on small maps, in the configurations users build, is
`test_export_matrix.py`'s. All exports of the
backend's pass happen once (a module fixture), then one runtime process
per runtime runs all its artifacts.
"""

import pathlib
import re

import keras
import numpy as np
import pytest
from export_checks import DYNAMIC_SPATIAL
from export_checks import FORMATS
from export_checks import RELATIVE_TOLERANCE
from export_checks import RUNTIMES
from export_checks import SUFFIXES
from export_checks import export_kwargs
from export_checks import relative_difference
from export_checks import run_entries
from export_checks import runner_entries
from export_checks import skip_reason as _skip_reason
from helpers import BACKEND

from conv_self_attention import SelfAttention2D
from conv_self_attention import export_model
from conv_self_attention import use_attention_kernel

CHANNELS = 8
# `auto` at 32x32 is the model of the guide's examples (below), run with
# each format of the backend.
KERNELS = (("auto", 128),)


def _cells():
    formats = FORMATS.get(BACKEND, ())
    cells = [
        (fmt, kernel, size, "fixed")
        for fmt in formats
        for kernel, size in KERNELS
    ]
    for fmt in formats:
        dynamic = fmt in DYNAMIC_SPATIAL[BACKEND]
        cells.append((fmt, "auto", 32, "unknown" if dynamic else "signature"))
    return cells


CELLS = _cells()


def _cell_id(cell):
    fmt, kernel, size, spatial = cell
    return f"{fmt}-{kernel}-{size}-{spatial}"


def _model(size, spatial):
    """Conv2D -> SelfAttention2D(gamma=1) -> Conv2D; batch unknown."""
    keras.utils.set_random_seed(0)
    side = size if spatial == "fixed" else None
    inputs = keras.Input((side, side, CHANNELS))
    x = keras.layers.Conv2D(16, 1)(inputs)
    layer = SelfAttention2D(gamma=1.0, name="attention")
    x = layer(x)
    outputs = keras.layers.Conv2D(4, 1)(x)
    return keras.Model(inputs, outputs), layer


def _export_kwargs(fmt, size, spatial):
    signature = None
    if spatial == "signature":
        signature = (None, size, size, CHANNELS)
    return export_kwargs(fmt, signature)


def _inputs(size, spatial):
    rng = np.random.default_rng(size)
    batch = rng.normal(size=(2, size, size, CHANNELS)).astype("float32")
    inputs = {"batch2": batch, "batch1": batch[:1]}
    if spatial == "unknown":
        inputs["other_size"] = batch[:1, : size // 2, : size // 2]
    return inputs


def _export_cell(cell, folder):
    """Exports one cell; returns its runner entries and the expected
    outputs."""
    fmt, kernel, size, spatial = cell
    name = _cell_id(cell)
    model, layer = _model(size, spatial)
    inputs = _inputs(size, spatial)
    with use_attention_kernel(kernel):
        expected = {
            key: keras.ops.convert_to_numpy(model(value))
            for key, value in inputs.items()
        }
        artifact = str(folder / name) + SUFFIXES.get(fmt, "")
        export_model(
            model, artifact, format=fmt, verbose=False,
            **_export_kwargs(fmt, size, spatial),
        )
    larger = None
    if spatial == "signature":
        # A map twice the exported size: right, or an error, never wrong.
        larger = np.tile(inputs["batch1"], (1, 2, 2, 1))
        expected["larger"] = keras.ops.convert_to_numpy(model(larger))
    entries = runner_entries(folder, name, artifact, inputs, larger)
    return entries, expected, layer.last_kernel


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`{cell: (outputs or error, expected, traced KernelCall)}`."""
    folder = tmp_path_factory.mktemp(f"export-{BACKEND}")
    results, groups = {}, {}
    for cell in CELLS:
        if _skip_reason(cell[0]):
            continue
        try:
            cell_entries, expected, traced = _export_cell(cell, folder)
        except Exception as error:  # noqa: BLE001 - reported by the test
            results[cell] = (f"export: {error}", None, None)
            continue
        groups[cell] = (RUNTIMES[cell[0]][0], cell_entries)
        results[cell] = (None, expected, traced)
    for cell, produced in run_entries(groups, folder).items():
        results[cell] = (produced, *results[cell][1:])
    return results


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_exported_model_matches_keras(exported, cell):
    reason = _skip_reason(cell[0])
    if reason:
        pytest.skip(reason)
    produced, expected, traced = exported[cell]
    assert not isinstance(produced, str), produced
    assert "error" not in produced, str(produced.get("error"))
    kernel = cell[1]
    if kernel != "auto":
        assert traced.implementation == kernel
    relative = {}
    larger = expected.pop("larger", None)
    if larger is not None:
        # Refused (the larger map's own error), or computed right.
        if "larger_error" in produced:
            relative["larger"] = "refused"
        else:
            np.testing.assert_allclose(
                produced["larger"], larger, rtol=0,
                atol=RELATIVE_TOLERANCE * np.abs(larger).max(),
            )
            relative["larger"] = "computed"
    for key, want in expected.items():
        relative[key] = relative_difference(produced[key], want, key)
    # Shown with `pytest -rP`: the numbers of the guide's support matrix.
    print(f"{BACKEND} {_cell_id(cell)} traced {traced[:2]}: {relative}")


GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs/guide/deploying.md"
# The first line of each Python block of the guide names where it runs.
GUIDE_LABELS = {
    "# TensorFlow or JAX:": ("tensorflow", "jax"),
    "# TensorFlow:": ("tensorflow",),
    "# torch:": ("torch",),
    "# Any backend:": ("tensorflow", "jax", "torch"),
    # Run by tests/test_export_torch_module.py on the PyTorch guide's module.
    "# torch.nn.Module:": (),
}


# Each block exports, then loads and runs the artifact after this line.
RUN_MARK = "# Load and run it"


def guide_blocks(label=None):
    """The guide's Python blocks for this backend, or those of `label`."""
    pattern = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
    blocks = pattern.findall(GUIDE.read_text())
    chosen = []
    for block in blocks:
        first = next(k for k in GUIDE_LABELS if block.startswith(k + " "))
        if first == label or (label is None and BACKEND in GUIDE_LABELS[first]):
            chosen.append(block)
    return chosen


def test_guide_examples_run_and_match(tmp_path, monkeypatch):
    blocks = guide_blocks()
    for fmt in FORMATS[BACKEND]:
        reason = _skip_reason(fmt)
        if reason:
            pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    model, _ = _model(32, "fixed")
    inputs = _inputs(32, "fixed")
    for block in blocks:
        # Exported once; loaded and run at batch 2, then at batch 1.
        export, run = block.split(RUN_MARK)
        namespace = {"keras": keras, "model": model}
        for key, images in inputs.items():
            expected = keras.ops.convert_to_numpy(model(images))
            namespace["images"] = images
            if export:
                exec(compile(export, str(GUIDE), "exec"), namespace)
                export = ""
            exec(compile(RUN_MARK + run, str(GUIDE), "exec"), namespace)
            outputs = namespace["outputs"]
            if hasattr(outputs, "detach"):  # a torch tensor
                outputs = outputs.detach().numpy()
            bound = RELATIVE_TOLERANCE * np.abs(expected).max()
            np.testing.assert_allclose(
                np.asarray(outputs), expected, rtol=0, atol=bound,
                err_msg=f"{key}: {block}",
            )


@pytest.mark.once
def test_use_attention_kernel_is_checked_scoped_and_not_stored():
    with pytest.raises(ValueError, match="attention_implementation='flash'"):
        with use_attention_kernel("flash"):
            pass
    with pytest.raises(ValueError, match="chunk_size=0"):
        with use_attention_kernel("chunked", chunk_size=0):
            pass
    layer = SelfAttention2D(attention_implementation="dense")
    images = np.zeros((1, 8, 8, 16), "float32")
    with use_attention_kernel("chunked", chunk_size=32):
        layer(images)
        assert layer.last_kernel.implementation == "chunked"
        assert layer.last_kernel.chunk_size == 32
    assert layer.get_config()["attention_implementation"] == "dense"
    assert layer.get_config()["chunk_size"] is None
    layer(images)
    assert layer.last_kernel.implementation == "dense"
