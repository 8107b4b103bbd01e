"""Attention statistics against a NumPy reference, the planner, the monitor."""

import math

import keras
import numpy as np
import pytest
import reference
from keras import ops

from conv_self_attention import AttentionMonitor
from conv_self_attention import SelfAttention1D
from conv_self_attention import SelfAttention2D
from conv_self_attention import SelfAttention3D
from conv_self_attention import attention_statistics
from conv_self_attention import diagnostics

CLASSES = {1: SelfAttention1D, 2: SelfAttention2D, 3: SelfAttention3D}


def _terms(layer, inputs):
    """Reference scores `(B, h, N, M)`, attended and shortcut (float64)."""
    x = np.asarray(inputs, dtype=np.float64)
    if layer.data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    batch, heads = x.shape[0], layer.num_heads
    query = reference.project(layer.query_projection, x)
    key = reference.project(layer.key_projection, x)
    value = reference.project(layer.value_projection, x)
    if layer.pool_size is not None:
        key = reference.max_pool_same(key, layer.pool_size)
        value = reference.max_pool_same(value, layer.pool_size)
    query = query.reshape(batch, -1, heads, query.shape[-1] // heads)
    key = key.reshape(batch, -1, heads, key.shape[-1] // heads)
    value = value.reshape(batch, -1, heads, value.shape[-1] // heads)
    scale = 1 / math.sqrt(query.shape[-1]) if layer.use_scale else 1.0
    scores = reference.softmax(
        np.einsum("bnhd,bmhd->bhnm", query, key) * scale
    )
    context = np.einsum("bhnm,bmhd->bnhd", scores, value)
    attended = reference.project(
        layer.output_projection, context.reshape(batch, context.shape[1], -1)
    )
    # Head j's share: its value channels times its rows of the kernel.
    kernel, _ = reference.projection_weights(layer.output_projection)
    kernel = kernel.reshape(heads, context.shape[-1], -1)
    shares = np.einsum("bnhd,hdf->bhnf", context, kernel).reshape(
        batch, heads, -1)
    shortcut = x
    if layer.shortcut_projection is not None:
        shortcut = reference.project(layer.shortcut_projection, x)
    # Uniform attention: every query receives the mean of the values.
    uniform_context = np.broadcast_to(value.mean(axis=1, keepdims=True),
                                      context.shape)
    uniform = reference.project(
        layer.output_projection,
        uniform_context.reshape(batch, context.shape[1], -1))
    uniform_shares = np.einsum("bnhd,hdf->bhnf", uniform_context,
                               kernel).reshape(batch, heads, -1)
    return (scores, attended.reshape(batch, -1), shortcut.reshape(batch, -1),
            shares, uniform.reshape(batch, -1), uniform_shares)


def _windows(spatial, pool_size):
    """Query positions, and each key's first and last covered input cell.

    Max-pooling a coordinate ramp gives a window's last covered cell, and
    max-pooling its negative the first (padding is -inf).
    """
    rank = len(spatial)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in spatial],
                                indexing="ij"), axis=-1).astype("float64")
    queries = grid.reshape(-1, rank)
    if pool_size is None:
        return queries, queries, queries
    last = reference.max_pool_same(grid[None], pool_size)[0]
    first = -reference.max_pool_same(-grid[None], pool_size)[0]
    return queries, first.reshape(-1, rank), last.reshape(-1, rank)


def _positions(spatial, pool_size):
    """Query and key positions; a key halfway across its covered cells."""
    queries, first, last = _windows(spatial, pool_size)
    return queries, (first + last) / 2


def _local(spatial, pool_size, rows):
    """`(n, M)`: the query is at most one pool from the key's cells on
    every axis, i.e. in the key's window or a neighbouring one (middle
    windows are full, so two windows away is more than a pool)."""
    queries, first, last = _windows(spatial, pool_size)
    pools = np.ones(len(spatial)) if pool_size is None else np.broadcast_to(
        pool_size, (len(spatial),))
    point = queries[rows][:, None]
    gap = np.maximum(first[None] - point, point - last[None]).clip(min=0)
    return (gap <= pools).all(-1)


def _reference_statistics(layer, inputs, rows=None):
    scores, attended, shortcut, shares, uniform, uniform_shares = _terms(
        layer, inputs)
    rank = layer.rank
    x_shape = np.shape(inputs)
    spatial = (x_shape[1 : 1 + rank] if layer.data_format == "channels_last"
               else x_shape[2 : 2 + rank])
    queries, keys = _positions(spatial, layer.pool_size)
    rows = np.arange(len(queries)) if rows is None else rows
    probs = scores[:, :, rows]
    offsets = queries[rows][:, None] - keys[None]
    distance = np.sqrt((offsets**2).sum(-1))
    local = _local(spatial, layer.pool_size, rows)
    mean = scores.mean(axis=2, keepdims=True)
    dependence = 0.5 * np.abs(probs - mean).sum(-1)
    num_keys = keys.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
    nats = -plogp.sum(-1)
    entropy = nats / math.log(num_keys) if num_keys > 1 else (
        np.zeros(probs.shape[:3]))
    gamma = float(layer.gamma.numpy())
    norms = np.linalg.norm(shortcut, axis=1)
    kept = norms > 0
    head_norms = np.linalg.norm(shares, axis=2)[kept] / norms[kept, None]
    uniform_heads = np.linalg.norm(uniform_shares, axis=2)[kept] / norms[
        kept, None]
    expected = {
        "gamma": gamma,
        "contribution": np.mean(
            abs(gamma) * np.linalg.norm(attended, axis=1)[kept] / norms[kept]
        ),
        "entropy": entropy.mean(),
        "effective_keys": np.exp(nats).mean(),
        "mean_distance": (probs * distance).sum(-1).mean(),
        "local_mass": (probs * local).sum(-1).mean(),
        "query_dependence": dependence.mean(),
        "uniform_contribution": np.mean(
            abs(gamma) * np.linalg.norm(uniform, axis=1)[kept] / norms[kept]
        ),
        "uniform_mean_distance": distance.mean(),
        "uniform_local_mass": local.mean(),
    }
    for head in range(layer.num_heads):
        expected.update({
            f"contribution/head_{head}": abs(gamma) * np.mean(
                head_norms[:, head]),
            f"entropy/head_{head}": entropy[:, head].mean(),
            f"effective_keys/head_{head}": np.exp(nats)[:, head].mean(),
            f"uniform_contribution/head_{head}": abs(gamma) * np.mean(
                uniform_heads[:, head]),
            f"mean_distance/head_{head}": (
                probs * distance).sum(-1)[:, head].mean(),
            f"local_mass/head_{head}": (probs * local).sum(-1)[:, head].mean(),
            f"query_dependence/head_{head}": dependence[:, head].mean(),
        })
    return expected


def _check(actual, expected, tolerance=1e-5):
    for name, value in expected.items():
        if name in actual:
            assert actual[name] == pytest.approx(value, rel=tolerance,
                                                 abs=tolerance), name


def _layer(rank, shape, seed=0, **kwargs):
    layer = CLASSES[rank](**kwargs)
    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    layer.build(x.shape)
    rng = np.random.default_rng(seed + 1)
    # Larger query/key weights than the initializer's: peaked attention.
    for projection in (layer.query_projection, layer.key_projection):
        kernel = projection.kernel
        kernel.assign(rng.normal(0, 1.0, kernel.shape).astype("float32"))
    return layer, x


CASES = [
    (1, (2, 7, 8), {}),
    (1, (2, 9, 8), {"pool_size": 2, "num_heads": 2}),
    (2, (2, 5, 6, 8), {"num_heads": 2, "gamma": 0.3}),
    (2, (2, 5, 7, 8), {"pool_size": (2, 3), "filters": 4, "use_scale": True}),
    (2, (2, 8, 5, 6), {"data_format": "channels_first", "pool_size": 2}),
    (2, (2, 7, 6, 8), {"num_heads": 2, "pool_size": 3, "use_bias": True,
                       "spectral_norm": True}),
    (3, (1, 3, 4, 5, 8), {"num_heads": 2, "pool_size": 2, "gamma": -0.5}),
]


@pytest.mark.parametrize("rank, shape, kwargs", CASES)
def test_statistics_match_the_numpy_reference(rank, shape, kwargs):
    layer, x = _layer(rank, shape, **{"gamma": 0.5, **kwargs})
    stats = attention_statistics(layer, x, per_head=True)[layer.name]
    expected = _reference_statistics(layer, x)
    assert set(stats) == set(expected)
    assert stats.sample_size == np.prod(shape[1:-1] if kwargs.get(
        "data_format") is None else shape[2:])
    _check(stats, expected)


def test_sample_matches_the_full_computation_on_its_queries():
    layer, x = _layer(2, (3, 6, 6, 8), num_heads=2, pool_size=2, gamma=0.5)
    rows = diagnostics.sample_query_indices(36, 10, seed=3)
    assert len(rows) == 10 and len(set(rows.tolist())) == 10
    sampled = attention_statistics(layer, x, sample_size=10, seed=3,
                                   per_head=True)
    assert sampled[layer.name].sample_size == 10
    expected = _reference_statistics(layer, x, rows=rows)
    _check(sampled[layer.name], expected)
    # A budget of a few query rows forces blocks of one example and one
    # query; the sample, the contribution and the query dependence (whose
    # mean distributions are over every query) stay the same.
    sampling = diagnostics.sampling
    floats = (sampling.BLOCK_ARRAYS * 2 + sampling.QUERY_KEY_ARRAYS) * 9
    plan = diagnostics.plan_query_sample(3, 2, 36, 9, sample_size=10,
                                         max_bytes=4 * floats + 100)
    assert plan[:3] == (10, 1, 1)
    tiny = attention_statistics(layer, x, sample_size=10, seed=3,
                                per_head=True, max_bytes=300_000)
    _check(tiny[layer.name], expected)


def test_zero_query_kernel_gives_uniform_attention():
    layer, x = _layer(1, (2, 3, 8), gamma=0.5)
    layer.query_projection.kernel.assign(
        np.zeros(layer.query_projection.kernel.shape, "float32")
    )
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["entropy"] == pytest.approx(1.0, abs=1e-6)
    # Positions 0, 1, 2: the distances to all keys sum to 3 + 2 + 3.
    assert stats["mean_distance"] == pytest.approx(8 / 9, abs=1e-6)
    assert stats["local_mass"] == pytest.approx(7 / 9, abs=1e-6)


def test_attention_to_one_far_position():
    # Channel 0 is 1 everywhere, channel 1 marks position 4: the logit of
    # every query is 20 on key 4 and 0 elsewhere.
    layer = SelfAttention1D(key_channels=1, value_channels=1, gamma=0.5)
    x = np.zeros((1, 5, 2), "float32")
    x[..., 0] = 1.0
    x[0, 4, 1] = 1.0
    layer.build(x.shape)
    layer.query_projection.kernel.assign(np.array([[1.0], [0.0]], "float32"))
    layer.key_projection.kernel.assign(np.array([[0.0], [20.0]], "float32"))
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["entropy"] < 1e-5
    # Distances from positions 0..4 to position 4.
    assert stats["mean_distance"] == pytest.approx(2.0, abs=1e-5)
    assert stats["local_mass"] == pytest.approx(2 / 5, abs=1e-5)


def test_contribution_is_zero_without_gamma():
    layer, x = _layer(2, (2, 4, 4, 8), gamma=0.0)
    assert attention_statistics(layer, x)[layer.name]["contribution"] == 0.0
    layer.gamma.assign(0.5)
    contribution = attention_statistics(layer, x)[layer.name]["contribution"]
    assert contribution > 0.01
    _check({"contribution": contribution}, _reference_statistics(layer, x))


def test_zero_shortcut_examples_are_skipped():
    layer, x = _layer(1, (3, 4, 8), gamma=0.5)
    x[1] = 0.0
    stats = attention_statistics(layer, x)[layer.name]
    _check(stats, _reference_statistics(layer, x))
    assert math.isnan(
        attention_statistics(layer, x[1:2])[layer.name]["contribution"]
    )


def test_one_key_has_zero_entropy():
    layer, x = _layer(2, (1, 2, 2, 8), pool_size=2)
    stats = attention_statistics(layer, x)[layer.name]
    assert stats["entropy"] == 0.0 and stats["local_mass"] == 1.0
    assert stats["mean_distance"] == pytest.approx(math.sqrt(0.5))


def test_key_positions_of_partial_windows():
    np.testing.assert_allclose(
        diagnostics.key_coordinates((5,), 2)[:, 0], [0.5, 2.5, 4.0]
    )
    # pool 3 on 4 cells: one padded cell before, so windows {0, 1}, {2, 3}.
    np.testing.assert_allclose(
        diagnostics.key_coordinates((4,), 3)[:, 0], [0.5, 2.5]
    )
    for spatial, pool in (((7, 4), (3, 3)), ((5, 6, 3), 2)):
        _, expected = _positions(spatial, normalize(pool, len(spatial)))
        np.testing.assert_allclose(
            diagnostics.key_coordinates(spatial, pool), expected
        )


def normalize(pool, rank):
    return (pool,) * rank if isinstance(pool, int) else pool


@pytest.mark.parametrize(
    "sizes",
    [(1, 1, 1, 1), (8, 2, 4096, 4096), (64, 8, 1024, 256), (3, 4, 50, 7),
     (1000, 1, 16, 16)],
)
def test_plan_keeps_every_step_within_the_budget(sizes):
    examples, heads, queries, keys = sizes
    floats = {"example_floats": 7 * queries, "row_floats": 40}
    row = diagnostics.sampling.BLOCK_ARRAYS * heads * keys + 40
    shared = diagnostics.sampling.QUERY_KEY_ARRAYS * keys
    for budget in (4 * (row + shared + 7 * queries), 2**20, 2**28):
        plan = diagnostics.plan_query_sample(*sizes, max_bytes=budget,
                                             **floats)
        held = 4 * (plan.examples_per_step * 7 * queries
                    + plan.examples_per_step * plan.queries_per_step * row
                    + plan.queries_per_step * shared)
        assert held == plan.step_bytes <= budget
        assert plan.examples_per_step >= 1 and plan.queries_per_step >= 1
        # The sample does not depend on the budget.
        assert plan.num_sampled == min(queries, 1024)


def test_plan_samples_and_rejects():
    assert diagnostics.plan_query_sample(
        2, 1, 100, 10, sample_size=500
    ).num_sampled == 100
    assert diagnostics.plan_query_sample(
        2, 1, 5000, 10, sample_size=3000
    ).num_sampled == 3000
    with pytest.raises(ValueError, match="max_bytes=19"):
        diagnostics.plan_query_sample(1, 2, 4, 10, max_bytes=19)
    for bad in (0, 2.5, True, None):
        with pytest.raises(ValueError, match="num_keys"):
            diagnostics.plan_query_sample(1, 1, 1, bad)
    with pytest.raises(ValueError, match="row_floats=-1"):
        diagnostics.plan_query_sample(1, 1, 1, 1, row_floats=-1)
    np.testing.assert_array_equal(
        diagnostics.sample_query_indices(5, 9), np.arange(5)
    )
    np.testing.assert_array_equal(
        diagnostics.sample_query_indices(50, 4, seed=1),
        diagnostics.sample_query_indices(50, 4, seed=1),
    )


def _nested_model():
    inputs = keras.Input((5, 4, 8))
    attended = SelfAttention2D(num_heads=2, gamma=0.5, name="att")(inputs)
    inner = keras.Model(inputs, attended, name="inner")
    outer_inputs = keras.Input((5, 4, 8))
    x = keras.layers.Conv2D(8, 1, name="conv")(outer_inputs)
    x = inner(x)
    x = SelfAttention2D(pool_size=2, name="top")(x)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    return keras.Model(outer_inputs, outputs, name="outer")


def test_model_form_finds_nested_layers_with_their_inputs():
    model = _nested_model()
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 8)).astype("float32")
    stats = attention_statistics(model, x)
    assert set(stats) == {"inner/att", "top"}
    reaching = ops.convert_to_numpy(model.get_layer("conv")(x))
    att = model.get_layer("inner").get_layer("att")
    _check(stats["inner/att"], _reference_statistics(att, reaching))
    sequential = keras.Sequential(
        [keras.Input((5, 4, 8)), SelfAttention2D(gamma=0.2, name="seq_att")]
    )
    stats = attention_statistics(sequential, x)["seq_att"]
    _check(stats, _reference_statistics(sequential.layers[0], x))


def test_scores_layer_gives_the_same_statistics():
    layer, x = _layer(2, (2, 4, 5, 8), gamma=0.5, num_heads=2)
    twin = SelfAttention2D(**{**layer.get_config(),
                              "return_attention_scores": True})
    twin.build(x.shape)
    twin.set_weights(layer.get_weights())
    _check(attention_statistics(twin, x)[twin.name],
           attention_statistics(layer, x)[layer.name], tolerance=1e-6)


def test_bad_inputs_raise_value_errors_naming_the_argument():
    model = _nested_model()
    x = np.zeros((2, 5, 4, 8), "float32")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no self-attention layer"):
        attention_statistics(plain, np.zeros((2, 4)))
    for bad in (x[0], x[..., :3], np.zeros((2, 5, 4, 4, 8))):
        with pytest.raises(ValueError, match="`inputs`"):
            attention_statistics(model, bad)
        with pytest.raises(ValueError, match="`inputs`"):
            attention_statistics(model.get_layer("top"), bad)
    with pytest.raises(ValueError, match="Received: inputs.shape=.0, 5"):
        attention_statistics(model.get_layer("top"), x[:0])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="sample_size"):
            attention_statistics(model, x, sample_size=bad)
        with pytest.raises(ValueError, match="sample_size"):
            AttentionMonitor(x, sample_size=bad)
    with pytest.raises(ValueError, match="every"):
        AttentionMonitor(x, every=0)


def test_subclassed_model_needs_the_layer():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.attention = SelfAttention2D(gamma=0.5)

        def call(self, inputs):
            return self.attention(inputs)

    model = Subclassed()
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 8)).astype("float32")
    model(x)
    with pytest.raises(ValueError, match="pass the self-attention layer"):
        attention_statistics(model, x)
    stats = attention_statistics(model.attention, x)[model.attention.name]
    _check(stats, _reference_statistics(model.attention, x))


def test_mixed_precision_statistics_are_float32():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer, x = _layer(2, (2, 4, 4, 8), gamma=0.5, num_heads=2)
    finally:
        keras.config.set_dtype_policy("float32")
    stats = attention_statistics(layer, x)[layer.name]
    assert all(isinstance(value, float) for value in stats.values())
    # The projections run in float16, so compare loosely.
    _check(stats, _reference_statistics(layer, x), tolerance=2e-2)
