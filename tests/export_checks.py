"""What the export tests share (`test_export.py`, `test_export_matrix.py`):
the formats of each backend, what each needs installed, the export
arguments every test passes, running the artifacts in their runtimes
(`export_runner.py`, one fresh process per runtime) and the tolerance
their outputs must meet."""

import importlib.util

import keras
import numpy as np
from export_runner import run_runtime
from helpers import BACKEND

# max |y_runtime - y_keras| <= RELATIVE_TOLERANCE * max |y_keras|.
RELATIVE_TOLERANCE = 2e-5
FORMATS = {
    "tensorflow": ("tf_saved_model", "onnx", "litert"),
    "jax": ("tf_saved_model", "onnx"),
    "torch": ("onnx", "torch"),
}
# Per format: the runner's runtime, and the modules the export and the
# runtime need (all in the `export` extra). `onnx_dynamo` is torch's
# `torch.onnx.export(..., dynamo=True)`, which `model.export` does not
# take with a dynamic batch (Keras then uses the TorchScript exporter).
RUNTIMES = {
    "tf_saved_model": ("saved_model", ("tensorflow",)),
    "onnx": ("onnx", ("onnx", "onnxruntime")),
    "onnx_dynamo": ("onnx", ("onnx", "onnxruntime", "onnxscript")),
    "litert": ("litert", ("tensorflow", "ai_edge_litert")),
    "torch": ("torch", ()),
}
ONNX_EXPORTERS = {
    "tensorflow": "tf2onnx",
    "jax": "jax2onnx",
    "torch": "onnxscript",
}
SUFFIXES = {
    "onnx": ".onnx", "onnx_dynamo": ".onnx", "litert": ".tflite",
    "torch": ".pt2",
}
# Formats that export unknown height and width as they are (then also run
# at another size); the others get the spatial shape fixed by
# `input_signature` (the documented answer, docs/guide/deploying.md).
DYNAMIC_SPATIAL = {
    "tensorflow": ("tf_saved_model", "onnx"),
    "jax": ("tf_saved_model",),
    "torch": (),
}


def skip_reason(fmt):
    """Why this format's cells cannot run here, or `None`."""
    needed = list(RUNTIMES[fmt][1])
    if fmt == "onnx":
        needed.append(ONNX_EXPORTERS[BACKEND])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        return f"{missing} not installed (the `export` extra)"
    if fmt in ("torch", "onnx_dynamo") and (
        str(keras.ops.zeros(()).device) != "cpu"
    ):
        # The runner runs on the CPU; the program holds the GPU device.
        return "torch programs exported on a GPU run on that GPU"
    return None


def export_kwargs(fmt, signature=None):
    """`model.export` arguments of `fmt`: builtin ops for LiteRT, a dynamic
    batch for `torch`, and `signature` (an input shape, batch `None`) as
    the `input_signature` where given."""
    kwargs = {}
    if signature is not None:
        kwargs["input_signature"] = [
            keras.InputSpec(shape=signature, dtype="float32")
        ]
    if fmt == "litert":
        import tensorflow as tf

        # Builtin ops only: Keras allows Flex ops by default, which a plain
        # LiteRT interpreter cannot run.
        builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
        kwargs["target_spec"] = {"supported_ops": builtins}
    if fmt == "torch":
        import torch

        # Keras fixes the batch at 1 unless asked for a dynamic one.
        batch = torch.export.Dim("batch", min=1, max=64)
        kwargs["dynamic_shapes"] = {0: batch}
    return kwargs


def keras_outputs(model, inputs):
    """`{name: array}` of `model` on each input array: an output list's
    first output under the input's name, the others under `name.i`."""
    expected = {}
    for name, value in inputs.items():
        outputs = model(value)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for index, output in enumerate(outputs):
            key = name if index == 0 else f"{name}.{index}"
            expected[key] = keras.ops.convert_to_numpy(output)
    return expected


def runner_entries(folder, name, artifact, inputs, larger=None):
    """Saves one artifact's inputs; returns its runner manifest entries.

    `inputs` are fed as they are. `larger`, a map twice the exported size
    (as a runtime that resizes its input accepts it, LiteRT), gets an
    entry of its own whose error the runner keeps under `larger_error`:
    the artifact must compute it right or refuse it, never be wrong.
    """
    parts = {"inputs": (inputs, {})}
    if larger is not None:
        parts["larger"] = ({"larger": larger}, {"error_key": "larger_error"})
    entries = []
    for part, (arrays, options) in parts.items():
        np.savez(folder / f"{name}-{part}.npz", **arrays)
        entries.append({
            "artifact": artifact,
            "inputs": str(folder / f"{name}-{part}.npz"),
            "outputs": str(folder / f"{name}-{part}-outputs.npz"),
            **options,
        })
    return entries


def run_entries(groups, folder):
    """Runs every cell's runner entries, one process per runtime.

    Args:
        groups: `{cell: (runtime, entries)}`, the runner's manifest entries
            of each cell.
        folder: pathlib.Path, where the manifests go.

    Returns:
        `{cell: {name: array or error text}}` of what each runtime gave.
    """
    by_runtime = {}
    for cell, (runtime, entries) in groups.items():
        by_runtime.setdefault(runtime, []).append((cell, entries))
    produced = {}
    for runtime, cells in by_runtime.items():
        manifest = [entry for _, entries in cells for entry in entries]
        report = run_runtime(runtime, manifest, folder)
        assert report["imported"] == [], report
        for cell, entries in cells:
            produced[cell] = {}
            for entry in entries:
                with np.load(entry["outputs"]) as outputs:
                    produced[cell].update(
                        {key: outputs[key] for key in outputs.files}
                    )
    return produced


def relative_difference(got, want, key):
    """max |got - want| / max |want|, after asserting it is within
    `RELATIVE_TOLERANCE` (and the shapes equal)."""
    assert got.shape == want.shape, (key, got.shape, want.shape)
    scale = np.abs(want).max()
    np.testing.assert_allclose(
        got, want, rtol=0, atol=RELATIVE_TOLERANCE * scale, err_msg=key
    )
    return float(np.abs(got - want).max() / scale)
