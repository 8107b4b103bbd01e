"""`export_model`: the checks before Keras' `model.export` (issue 28).
Refusals happen before any converter runs; the exports that do run are
small ONNX (every backend) and LiteRT (TensorFlow) files, loaded in this
process."""

import importlib.util

import keras
import numpy as np
import pytest
from helpers import BACKEND

from conv_self_attention import SelfAttention2D
from conv_self_attention import export_model
from conv_self_attention import float32_copy
from conv_self_attention import use_attention_kernel

ONNX_EXPORTERS = {
    "tensorflow": "tf2onnx",
    "jax": "jax2onnx",
    "torch": "onnxscript",
}


def _model(dtype=None, scores=False):
    """Conv2D -> SelfAttention2D -> Conv2D on 6x6 maps, never called."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4), name="images")
    # 16 channels: 8 value channels, a width torch's ONNX export of the
    # `fused` kernel handles (issue 28).
    x = keras.layers.Conv2D(16, 1, dtype=dtype, name="stem")(inputs)
    attention = SelfAttention2D(
        gamma=1.0, return_attention_scores=scores, dtype=dtype,
        name="attention",
    )
    x = attention(x)
    if scores:
        x, attention_scores = x
    x = keras.layers.Conv2D(3, 1, dtype=dtype, name="head")(x)
    return keras.Model(inputs, [x, attention_scores] if scores else x)


def _images(batch=2):
    rng = np.random.default_rng(0)
    return rng.normal(size=(batch, 6, 6, 4)).astype("float32")


def _onnx_session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )


def _assert_close(got, want):
    """Within the export tests' tolerance, relative to the largest output."""
    assert got.shape == want.shape
    bound = 2e-5 * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def _skip_without_onnx():
    for module in ("onnx", "onnxruntime", ONNX_EXPORTERS[BACKEND]):
        pytest.importorskip(module)


def test_refuses_what_is_not_a_model_or_a_format(tmp_path):
    with pytest.raises(TypeError, match="argument `model`.*model='model'"):
        export_model("model", tmp_path / "m")
    with pytest.raises(ValueError, match="argument `format`.*format='pt'"):
        export_model(_model(), tmp_path / "m", format="pt")


# Where a 16-bit model's file fails (to load, run or convert), by policy
# and backend; the other formats of the backend hold it.
REFUSED = {
    "mixed_bfloat16": {
        "tensorflow": ("onnx", "litert"), "jax": ("onnx",),
        "torch": ("onnx",),
    },
    "mixed_float16": {"tensorflow": ("litert",), "jax": (), "torch": ()},
}


@pytest.mark.parametrize("policy", sorted(REFUSED))
def test_refuses_16_bit_models_where_their_files_fail(tmp_path, policy):
    model = _model(dtype=policy)
    for fmt in REFUSED[policy][BACKEND]:
        path = tmp_path / ("m.tflite" if fmt == "litert" else "m.onnx")
        with pytest.raises(ValueError) as refused:
            export_model(model, path, format=fmt)
        message = str(refused.value)
        assert f"format={fmt!r}" in message
        for layer in ("stem", "attention", "head"):
            assert f"'{layer}' ({policy})" in message
        assert "float32_copy(model)" in message
        assert not path.exists()


def test_float32_copy_has_the_weights_and_computes_in_float32():
    model = _model(dtype="mixed_bfloat16")
    copy = float32_copy(model)
    assert {layer.compute_dtype for layer in copy.layers} == {"float32"}
    for ours, theirs in zip(
        copy.get_weights(), model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
    images = _images()
    got = keras.ops.convert_to_numpy(copy(images))
    want = keras.ops.convert_to_numpy(keras.ops.cast(model(images), "float32"))
    # bfloat16 keeps 8 bits of mantissa.
    bound = 0.05 * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=bound)

    class Subclassed(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(TypeError, match="functional or `Sequential`"):
        float32_copy(Subclassed())


def test_never_called_model_exports(tmp_path):
    _skip_without_onnx()
    model = _model()
    path = tmp_path / "m.onnx"
    export_model(model, path, format="onnx", verbose=False)
    session = _onnx_session(path)
    images = _images()
    (got,) = session.run(None, {session.get_inputs()[0].name: images})
    _assert_close(got, keras.ops.convert_to_numpy(model(images)))


def test_full_integer_litert_traces_dense(tmp_path):
    model = _model()
    path = tmp_path / "m.tflite"

    def calibration():
        for _ in range(4):
            yield [_images(1)]

    for kernel in ("chunked", "fused"):
        with use_attention_kernel(kernel), pytest.raises(
            ValueError, match=rf"'attention' \({kernel}\).*"
            r'use_attention_kernel\("dense"\)'
        ):
            export_model(
                model, path, format="litert",
                representative_dataset=calibration,
            )
    assert not path.exists()
    if BACKEND != "tensorflow" or importlib.util.find_spec(
        "ai_edge_litert"
    ) is None:
        return
    import tensorflow as tf

    # `auto`, the layer's own: exported with `dense`.
    export_model(
        model, path, format="litert", verbose=False,
        optimizations=[tf.lite.Optimize.DEFAULT],
        representative_dataset=calibration,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
    )
    assert path.stat().st_size > 0
    assert model.get_layer("attention").last_kernel.implementation == "dense"


def test_scores_output_order_and_names(tmp_path):
    # ONNX Runtime keeps the model's order (its names are each exporter's
    # own); LiteRT's signature runner names them by position, whatever
    # order `get_output_details()` lists them in (the Deploying guide).
    _skip_without_onnx()
    model = _model(scores=True)
    images = _images()
    want = [keras.ops.convert_to_numpy(y) for y in model(images)]
    assert [w.shape for w in want] == [(2, 6, 6, 3), (2, 1, 36, 36)]
    export_model(model, tmp_path / "m.onnx", format="onnx", verbose=False)
    session = _onnx_session(tmp_path / "m.onnx")
    got = session.run(None, {session.get_inputs()[0].name: images})
    for ours, theirs in zip(got, want, strict=True):
        _assert_close(ours, theirs)
    if BACKEND != "tensorflow":
        return
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    import tensorflow as tf

    path = tmp_path / "m.tflite"
    export_model(
        model, path, format="litert", verbose=False,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
    )
    interpreter = interpreter_module.Interpreter(model_path=str(path))
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature["outputs"] == ["output_0", "output_1"]
    runner = interpreter.get_signature_runner("serving_default")
    got = runner(**{signature["inputs"][0]: images})
    for index, theirs in enumerate(want):
        _assert_close(got[f"output_{index}"], theirs)
