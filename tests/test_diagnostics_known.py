"""Attention statistics with known answers, and the arguments they refuse.

Each case builds weights whose attention is known exactly (uniform,
key-only, one-hot, perfectly local), so the expected values are numbers
rather than a second implementation.
"""

import math

import keras
import numpy as np
import pytest

from conv_self_attention import AttentionMonitor
from conv_self_attention import SelfAttention1D
from conv_self_attention import SelfAttention2D
from conv_self_attention import attention_statistics


def _assign(projection, kernel, bias=None):
    projection.kernel.assign(np.asarray(kernel, "float32"))
    if bias is not None:
        projection.bias.assign(np.asarray(bias, "float32"))


def _random_layer(x, **kwargs):
    layer = SelfAttention1D(gamma=0.5, **kwargs)
    layer.build(x.shape)
    return layer


def test_uniform_attention_is_not_query_dependent():
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    layer = _random_layer(x)
    _assign(layer.query_projection, np.zeros((8, 1)))
    stats = attention_statistics(layer, x, per_head=True)[layer.name]
    assert stats["entropy"] == pytest.approx(1.0, abs=1e-6)
    assert stats["query_dependence"] == pytest.approx(0.0, abs=1e-6)


def test_key_only_logits_are_not_query_dependent():
    # No query kernel, a query bias: every query has the same logits,
    # which vary over the keys (entropy below 1), so the same map.
    x = np.random.default_rng(1).normal(size=(2, 6, 8)).astype("float32")
    layer = _random_layer(x, key_channels=2, use_bias=True)
    _assign(layer.query_projection, np.zeros((8, 2)), bias=[2.0, -1.5])
    _assign(layer.key_projection,
            np.random.default_rng(2).normal(0, 2, (8, 2)))
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["entropy"] < 0.9
    assert stats["query_dependence"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("positions", [2, 6])
def test_one_hot_self_attention_has_query_dependence_one_minus_one_over_n(
    positions,
):
    # One-hot positions: query i has logit 30 on key i, 0 elsewhere.
    x = np.eye(positions, dtype="float32")[None]
    layer = _random_layer(x, key_channels=positions, value_channels=2)
    _assign(layer.query_projection, np.eye(positions))
    _assign(layer.key_projection, 30 * np.eye(positions))
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["query_dependence"] == pytest.approx(
        1 - 1 / positions, abs=1e-5)
    assert stats["entropy"] < 1e-5 and stats["local_mass"] == (
        pytest.approx(1.0, abs=1e-5))


def _window_layer(pool, size, shift):
    """A 2D layer on a `size` x `size` map whose every query attends to
    the key of the window `shift` windows down (and right), cyclically."""
    windows = -(-size // pool)
    before = (windows * pool - size) // 2  # `padding="same"`
    index = (np.arange(size) + before) // pool
    cell = (index[:, None] * windows + index[None, :]).ravel()
    x = np.eye(windows**2, dtype="float32")[cell].reshape(
        1, size, size, windows**2)
    layer = SelfAttention2D(gamma=0.5, pool_size=pool, value_channels=2,
                            key_channels=windows**2)
    layer.build(x.shape)
    rows = (np.arange(windows) + shift) % windows
    target = (rows[:, None] * windows + rows[None, :]).ravel()
    _assign(layer.query_projection, np.eye(windows**2)[target])
    _assign(layer.key_projection, 20 * np.eye(windows**2))
    return layer, x


@pytest.mark.parametrize("pool", [1, 2, 3, 4])
def test_perfectly_local_attention_has_local_mass_one(pool):
    # Map sizes that give 4 or 5 windows per axis, partial ones included.
    size = 5 * pool - (2 if pool > 2 else 0)
    layer, x = _window_layer(pool, size, shift=0)
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["local_mass"] == pytest.approx(1.0, abs=1e-6)
    # Two windows away on both axes (cyclically: 2 or more) is not local.
    layer, x = _window_layer(pool, size, shift=2)
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["local_mass"] == pytest.approx(0.0, abs=1e-6)


def test_head_with_zero_rows_contributes_nothing():
    x = np.random.default_rng(3).normal(size=(2, 5, 5, 8)).astype("float32")
    layer = SelfAttention2D(gamma=0.5, num_heads=2, value_channels=4)
    layer.build(x.shape)
    before = attention_statistics(layer, x, per_head=True)[layer.name]
    kernel = layer.output_projection.kernel.numpy()
    kernel[2:] = 0.0  # Head 1 owns rows 2 and 3 (dv / h = 2).
    _assign(layer.output_projection, kernel)
    after = attention_statistics(layer, x, per_head=True)[layer.name]
    assert after["contribution/head_1"] == 0.0
    assert before["contribution/head_1"] > 0.01
    assert after["contribution/head_0"] == pytest.approx(
        before["contribution/head_0"], rel=1e-6)
    assert after["contribution"] == pytest.approx(
        after["contribution/head_0"], rel=1e-6)
    # What the attention looks at is unchanged.
    assert after["entropy/head_1"] == before["entropy/head_1"]


def test_shared_layer_is_measured_at_every_call():
    shared = SelfAttention2D(gamma=0.5, name="shared")
    inputs = keras.Input((4, 4, 8))
    first = shared(inputs)
    second = shared(keras.layers.Conv2D(8, 1, name="conv")(first))
    model = keras.Model(inputs, second)
    x = np.random.default_rng(4).normal(size=(2, 4, 4, 8)).astype("float32")
    stats = attention_statistics(model, x)
    assert set(stats) == {"shared/call_0", "shared/call_1"}
    reaching = keras.Model(inputs, model.get_layer("conv").output)
    for path, layer_inputs in (("shared/call_0", x),
                               ("shared/call_1", reaching.predict(
                                   x, verbose=0))):
        alone = attention_statistics(shared, layer_inputs)["shared"]
        for name, value in alone.items():
            assert stats[path][name] == pytest.approx(value, rel=1e-5), name
    assert stats["shared/call_0"]["entropy"] != pytest.approx(
        stats["shared/call_1"]["entropy"], rel=1e-3)


@pytest.mark.parametrize("seed", [-1, 1.5, "a", None, True])
def test_bad_seed_is_refused(seed):
    x = np.zeros((1, 3, 8), "float32")
    layer = _random_layer(x)
    with pytest.raises(ValueError, match=re_escape(f"seed={seed!r}")):
        attention_statistics(layer, x, seed=seed)
    with pytest.raises(ValueError, match="Received: seed="):
        AttentionMonitor(x, seed=seed)


def re_escape(text):
    import re

    return re.escape(text)


def test_bad_arguments_and_layers_are_refused():
    x = np.zeros((1, 3, 8), "float32")
    layer = _random_layer(x)
    with pytest.raises(ValueError, match="per_head='no'"):
        attention_statistics(layer, x, per_head="no")
    with pytest.raises(ValueError, match="max_bytes=0"):
        attention_statistics(layer, x, max_bytes=0)
    with pytest.raises(ValueError, match="`model_or_layer` must be a built"):
        attention_statistics(SelfAttention1D(), x)
    with pytest.raises(TypeError, match="inputs.dtype=int32"):
        attention_statistics(layer, x.astype("int32"))
    assert math.isfinite(attention_statistics(layer, x)[layer.name][
        "entropy"])
