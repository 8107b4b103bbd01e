"""Pooled keys and values: the layer's pad-reshape-max pooling is Keras'
`ops.max_pool(..., padding="same")` exactly, and it exports where
`ops.max_pool` did not (issue 28): JAX to ONNX with 2D and 3D windows
(jax2onnx's `MaxPool` failed in ONNX Runtime), TensorFlow to LiteRT with 3D
windows and builtin ops only (`tf.MaxPool3D` is no builtin). Each artifact
runs in one fresh runtime process (`export_runner.py`)."""

import importlib.util

import keras
import numpy as np
import pytest
from export_runner import run_runtime
from helpers import BACKEND

from conv_self_attention import SelfAttention2D
from conv_self_attention import SelfAttention3D
from conv_self_attention.layers.projection import max_pool_same

# (spatial sizes, pool_size): odd and even sizes, windows that divide them
# and that do not, padding after only and on both sides (7 by 3: one
# before, one after).
CASES = (
    ((7,), (2,)), ((7,), (3,)), ((8,), (1,)),
    ((7, 8), (2, 3)), ((7, 8), (3, 3)), ((5, 5), (1, 2)),
    ((5, 4, 3), (2, 2, 2)), ((5, 4, 3), (3, 3, 1)),
)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_pooling_is_ops_max_pool_same(dtype):
    rng = np.random.default_rng(0)
    for spatial, pools in CASES:
        x = rng.normal(size=(2, *spatial, 3)).astype("float32")
        x = keras.ops.cast(x, dtype)
        want = keras.ops.max_pool(
            # float32: not every backend max-pools in 16 bits; the max of
            # rounded values is the same either way.
            keras.ops.cast(x, "float32"), pools, strides=pools,
            padding="same",
        )
        got = max_pool_same(x, pools)
        assert keras.backend.standardize_dtype(got.dtype) == dtype
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")),
            keras.ops.convert_to_numpy(want),
            err_msg=f"{spatial} {pools} {dtype}",
        )


def test_pooling_with_unknown_sizes_in_a_model():
    # One model, traced once where the backend traces, run at two sizes.
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Lambda(lambda x: max_pool_same(x, (3, 2)))(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    for spatial in ((7, 9), (6, 4)):
        x = rng.normal(size=(2, *spatial, 3)).astype("float32")
        want = keras.ops.max_pool(x, (3, 2), strides=(3, 2), padding="same")
        np.testing.assert_array_equal(
            model.predict(x, verbose=0), keras.ops.convert_to_numpy(want)
        )


# Per backend: the format whose converter failed on `ops.max_pool`, its
# runtime, and the modules both need.
EXPORTS = {
    "jax": ("onnx", "onnx", ".onnx", ("jax2onnx", "onnxruntime")),
    "tensorflow": (
        "litert", "litert", ".tflite", ("tensorflow", "ai_edge_litert")
    ),
}


def _models():
    """A 2D model (windows 2x3 on a 7x9 map) and a 3D one (2x2x2 on
    5x6x3), attention at full strength."""
    keras.utils.set_random_seed(0)
    models = {}
    for name, layer, shape in (
        ("2d", SelfAttention2D(pool_size=(2, 3), gamma=1.0), (7, 9, 8)),
        ("3d", SelfAttention3D(pool_size=2, gamma=1.0), (5, 6, 3, 8)),
    ):
        inputs = keras.Input(shape)
        models[name] = keras.Model(inputs, layer(inputs))
    return models


def test_pooled_models_export_and_run(tmp_path):
    if BACKEND not in EXPORTS:
        pytest.skip("the failing exports were JAX to ONNX and TF to LiteRT")
    fmt, runtime, suffix, modules = EXPORTS[BACKEND]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{missing} not installed (the `export` extra)")
    kwargs = {}
    if fmt == "litert":
        import tensorflow as tf

        kwargs["target_spec"] = {
            "supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]
        }
    rng = np.random.default_rng(2)
    entries, expected = [], {}
    for name, model in _models().items():
        batch = rng.normal(size=(2, *model.input_shape[1:]))
        inputs = {"batch2": batch.astype("float32")}
        inputs["batch1"] = inputs["batch2"][:1]
        expected[name] = {
            key: keras.ops.convert_to_numpy(model(x))
            for key, x in inputs.items()
        }
        artifact = str(tmp_path / name) + suffix
        model.export(artifact, format=fmt, verbose=False, **kwargs)
        np.savez(tmp_path / f"{name}-inputs.npz", **inputs)
        entries.append({
            "artifact": artifact,
            "inputs": str(tmp_path / f"{name}-inputs.npz"),
            "outputs": str(tmp_path / f"{name}-outputs.npz"),
        })
    report = run_runtime(runtime, entries, tmp_path)
    assert report["imported"] == [], report
    for name, entry in zip(expected, entries, strict=True):
        with np.load(entry["outputs"]) as produced:
            assert "error" not in produced.files, str(produced["error"])
            for key, want in expected[name].items():
                np.testing.assert_allclose(
                    produced[key], want, rtol=0,
                    atol=2e-5 * np.abs(want).max(), err_msg=f"{name} {key}",
                )
