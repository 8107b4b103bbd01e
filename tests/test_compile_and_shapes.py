"""Compiled execution (`jit_compile`, `tf.function`), `tf.data` input
pipelines, and models built for spatial sizes unknown until call time."""

import importlib.util

import keras
import numpy as np
import pytest
from helpers import BACKEND
from reference import reference_self_attention

from conv_self_attention import SelfAttention2D

CHANNELS = 8
SIZES = [(16, 16), (17, 23), (32, 32)]
POOLS = [None, 2]
# Every exact kernel. `chunk_size=100` gives several uneven blocks on these
# maps, and `chunked` must handle N unknown at trace time.
KERNELS = ("dense", "chunked", "fused")
KERNEL_POOLS = [(kernel, pool) for kernel in KERNELS for pool in POOLS]
# Fewer combinations where each one costs a compiled `fit`.
FIT_KERNEL_POOLS = [("dense", None), ("dense", 2), ("chunked", 2), ("fused", 2)]
HAS_TF = importlib.util.find_spec("tensorflow") is not None
to_numpy = keras.ops.convert_to_numpy


def _inputs(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, height, width, CHANNELS)).astype("float32")


def _layer(pool_size, implementation="dense"):
    """A two-head layer with `gamma != 0`, so attention shows in outputs."""
    return SelfAttention2D(
        num_heads=2,
        pool_size=pool_size,
        gamma=0.7,
        attention_implementation=implementation,
        chunk_size=100,
    )


def _attention_model(pool_size, implementation="dense", spatial=(None, None)):
    inputs = keras.Input((*spatial, CHANNELS))
    outputs = _layer(pool_size, implementation)(inputs)
    return keras.Model(inputs, outputs)


def _regression_model(pool_size, implementation="dense", spatial=(None, None)):
    """A trainable model with a scalar output, for `fit`."""
    inputs = keras.Input((*spatial, CHANNELS))
    x = _layer(pool_size, implementation)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs)


def _targets(x):
    return x.std(axis=(1, 2, 3))[:, None]


@pytest.mark.parametrize("implementation, pool_size", KERNEL_POOLS)
def test_unknown_spatial_sizes(implementation, pool_size):
    """One model built for `(None, None, C)` runs on several map sizes."""
    model = _attention_model(pool_size, implementation)
    assert model.output_shape == (None, None, None, CHANNELS)
    layer = model.layers[1]
    for index, (height, width) in enumerate(SIZES):
        x = _inputs(2, height, width, seed=index)
        outputs = model.predict(x, batch_size=2, verbose=0)
        assert outputs.shape == x.shape
        expected, _ = reference_self_attention(layer, x)
        np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool_size", POOLS)
def test_unknown_sizes_scores_shape(pool_size):
    """Score shapes: unknown when traced, exact at call time."""
    inputs = keras.Input((None, None, CHANNELS))
    layer = SelfAttention2D(pool_size=pool_size, return_attention_scores=True)
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape[1] == (None, 1, None, None)
    for height, width in SIZES:
        _, scores = model.predict(_inputs(1, height, width), verbose=0)
        grid = layer.key_value_spatial_shape((height, width))
        assert scores.shape == (1, 1, height * width, grid[0] * grid[1])
        np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)


@pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"),
    reason="jit_compile=True is XLA on TensorFlow and JAX; on torch it "
    "means torch.compile, which is not part of this feature",
)
@pytest.mark.parametrize("implementation, pool_size", FIT_KERNEL_POOLS)
def test_jit_compile_fit_and_predict(implementation, pool_size):
    """XLA-compiled training runs, and compiled inference matches eager."""
    model = _regression_model(pool_size, implementation, spatial=(17, 23))
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    x = _inputs(8, 17, 23)
    history = model.fit(x, _targets(x), batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    compiled = model.predict(x, batch_size=4, verbose=0)
    np.testing.assert_allclose(compiled, to_numpy(model(x)), atol=1e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit is JAX-only")
@pytest.mark.parametrize("implementation", KERNELS)
def test_jax_jit_stateless_call_on_several_sizes(implementation):
    """`jax.jit` of the stateless call retraces per size and stays exact."""
    import jax

    layer = _layer(2, implementation)
    layer.build((None, None, None, CHANNELS))
    compiled = jax.jit(layer.stateless_call)
    for height, width in SIZES:
        x = _inputs(1, height, width)
        outputs, _ = compiled(
            [w.value for w in layer.trainable_weights],
            [w.value for w in layer.non_trainable_weights],
            x,
        )
        expected, _ = reference_self_attention(layer, x)
        np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function is TF-only")
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("implementation, pool_size", KERNEL_POOLS)
def test_tf_function_with_unknown_spatial_sizes(
    implementation, pool_size, jit_compile
):
    """One trace with `None` spatial sizes serves every map size."""
    import tensorflow as tf

    layer = _layer(pool_size, implementation)
    layer.build((None, None, None, CHANNELS))
    spec = tf.TensorSpec((None, None, None, CHANNELS), tf.float32)
    traced = tf.function(layer, input_signature=[spec], jit_compile=jit_compile)
    for height, width in SIZES:
        x = _inputs(2, height, width)
        np.testing.assert_allclose(
            traced(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-5
        )
    assert traced.experimental_get_tracing_count() == 1


@pytest.mark.skipif(not HAS_TF, reason="tf.data needs TensorFlow installed")
def test_tf_data_pipeline():
    """`fit`, `evaluate` and `predict` consume a `tf.data.Dataset`.

    Keras feeds `tf.data` pipelines to every backend, so this runs on all
    three when TensorFlow is installed.
    """
    import tensorflow as tf

    x = _inputs(8, 16, 16)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, _targets(x)))
        .map(lambda image, target: (tf.image.flip_left_right(image), target))
        .batch(4)
        .prefetch(1)
    )
    model = _regression_model(2, "auto")
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(dataset, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    loss = model.evaluate(dataset, verbose=0)
    predictions = model.predict(dataset.map(lambda image, _: image), verbose=0)
    assert predictions.shape == (8, 1)
    expected = model.predict(x[:, :, ::-1], batch_size=4, verbose=0)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-5)
    assert np.isclose(loss, np.mean((expected - _targets(x)) ** 2), rtol=1e-4)


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
@pytest.mark.parametrize("implementation", KERNELS)
def test_pool_larger_than_unknown_map_is_finite(implementation):
    """With sizes unknown at build time, a 1x1 map still gives finite
    outputs (a pool larger than the map degrades to one key position)."""
    model = _attention_model(2, implementation)
    outputs = model.predict(_inputs(2, 1, 1), verbose=0)
    assert outputs.shape == (2, 1, 1, CHANNELS)
    assert np.isfinite(outputs).all()
