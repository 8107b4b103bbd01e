"""The layer's contract with users who subclass or reconfigure it: config
values are read-only, `_compute_attention` is a Keras-shaped override point
(and `last_kernel` never stale), spectral norm is finite for any kernel."""

import keras
import numpy as np
import pytest
from helpers import gradients
from helpers import to_numpy

from conv_self_attention import SelfAttention2D


def make_input(shape, batch=2, seed=0):
    x = np.random.default_rng(seed).normal(size=(batch, *shape))
    return x.astype("float32")


def test_config_values_are_read_only():
    layer = SelfAttention2D(num_heads=2)
    layer.build((None, 8, 8, 16))
    changes = {"num_heads": 4, "filters": 8, "pool_size": (2, 2),
               "chunk_size": 32, "attention_implementation": "dense",
               "return_attention_scores": True}
    for name, value in changes.items():
        with pytest.raises(AttributeError, match=f"`{name}`"):
            setattr(layer, name, value)
    assert layer.num_heads == 2 and layer.get_config()["num_heads"] == 2


class _UniformAttention(SelfAttention2D):
    """An override that computes attention without the kernels."""

    def _compute_attention(self, query, key, value, training=False):
        weights = keras.ops.ones((*query.shape[:3], key.shape[1]))
        weights = weights / key.shape[1]
        context = keras.ops.einsum("bnhm,bmhd->bnhd", weights, value)
        return context, None


def test_override_without_kernels_leaves_last_kernel_none():
    x = make_input((4, 4, 16))
    layer = _UniformAttention(gamma=1.0)
    layer(x)
    assert layer.last_kernel is None
    value = layer.attention_inputs(x)[2]
    mean = keras.ops.mean(value, axis=1, keepdims=True)
    context = keras.ops.broadcast_to(mean, (2, 16, *value.shape[2:]))
    attended = layer.output_projection(
        keras.ops.reshape(context, (2, 4, 4, -1))
    )
    np.testing.assert_allclose(
        to_numpy(layer(x)), x + to_numpy(attended), atol=1e-5
    )
    # A kernel call then an override's: `None`, not the stale call.
    twin = SelfAttention2D(gamma=1.0)
    twin(x)
    assert twin.last_kernel is not None
    twin._compute_attention = layer._compute_attention
    twin(x)
    assert twin.last_kernel is None


@pytest.mark.parametrize("training", [True, False])
def test_spectral_norm_of_a_zero_kernel_is_finite(training):
    """A zero-initialised layer (a common residual-branch recipe) gives
    its shortcut, not NaN; `u` is kept, and normalization resumes once
    the kernel is non-zero."""
    x = make_input((5, 5, 8))
    layer = SelfAttention2D(
        filters=8, gamma=1.0, spectral_norm=True, use_bias=True,
        kernel_initializer="zeros",
    )
    layer.build(x.shape)
    u_before = to_numpy(layer.query_projection.u)
    out = to_numpy(layer(x, training=training))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, x, atol=1e-6)
    _, _, grads = gradients(layer, [x], training=training)
    assert all(np.isfinite(g).all() for g in grads.values())
    np.testing.assert_array_equal(to_numpy(layer.query_projection.u),
                                  u_before)
    kernel = layer.query_projection.kernel
    kernel.assign(np.eye(8, 1, dtype="float32") * 3.0)
    normalized = to_numpy(layer.query_projection.normalized_kernel())
    np.testing.assert_allclose(np.abs(normalized).max(), 1.0, rtol=1e-5)


def test_from_config_keeps_keras_dtype_policy_handling():
    """Keras' `from_config` turns a saved policy (a dict) back into the
    policy; the package's wrapper keeps that and still raises its own
    `ValueError` for a malformed value in the same config."""
    config = SelfAttention2D(dtype="mixed_bfloat16").get_config()
    assert isinstance(config["dtype"], dict)
    clone = SelfAttention2D.from_config(config)
    assert clone.dtype_policy.name == "mixed_bfloat16"
    assert clone.compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="Received: num_heads=0"):
        SelfAttention2D.from_config({**config, "num_heads": 0})
