"""Tests of the visualization helpers against hand-built score tensors."""

import keras
import numpy as np
import pytest
from keras import ops

from conv_self_attention import SelfAttention2D
from conv_self_attention import visualize


def _coded_scores(spatial_shape, grid, batch=2, heads=3):
    """Scores whose value encodes `(sample, head, query, key)`."""
    queries, keys = int(np.prod(spatial_shape)), int(np.prod(grid))
    b, h, n, m = np.meshgrid(
        range(batch), range(heads), range(queries), range(keys),
        indexing="ij",
    )
    return (b * 1e6 + h * 1e4 + n * 100 + m).astype("float64")


def test_query_index_is_row_major_and_inverted_by_query_position():
    assert visualize.query_index((1, 2), (3, 4)) == 6
    assert visualize.query_index((0, 0, 1), (2, 2, 2)) == 1
    for index in range(12):
        position = visualize.query_position(index, (3, 4))
        assert visualize.query_index(position, (3, 4)) == index


@pytest.mark.parametrize("position", [(3, 0), (0, -1), (1,), (1.0, 2)])
def test_query_index_rejects_bad_positions(position):
    with pytest.raises(ValueError, match="position"):
        visualize.query_index(position, (3, 4))


def test_query_position_rejects_out_of_range_index():
    with pytest.raises(ValueError, match="index=12"):
        visualize.query_position(12, (3, 4))


def test_attention_maps_without_pooling():
    scores = _coded_scores((2, 3), (2, 3))
    maps = visualize.attention_maps(scores, (2, 3))
    assert maps.shape == (2, 3, 2, 3, 2, 3)
    # Query (1, 0) is position 3; key (0, 2) is position 2.
    assert maps[1, 2, 1, 0, 0, 2] == 1e6 + 2e4 + 300 + 2
    one = visualize.attention_maps(scores, (2, 3), query=(1, 0))
    np.testing.assert_array_equal(one, maps[:, :, 1, 0])
    np.testing.assert_array_equal(
        visualize.attention_maps(scores, (2, 3), query=3), one
    )


def test_attention_maps_with_pooled_keys():
    # A 5x4 map pooled by 2 has a ceil(5/2) x ceil(4/2) = 3x2 key grid.
    scores = _coded_scores((5, 4), (3, 2), batch=1, heads=1)
    maps = visualize.attention_maps(scores, (5, 4), pool_size=2, query=(4, 3))
    assert maps.shape == (1, 1, 3, 2)
    expected = 19 * 100 + np.arange(6).reshape(3, 2)
    np.testing.assert_array_equal(maps[0, 0], expected)


def test_attention_maps_rejects_scores_of_another_grid():
    scores = np.zeros((1, 1, 20, 20))
    with pytest.raises(ValueError, match=r"scores.shape=\(1, 1, 20, 20\)"):
        visualize.attention_maps(scores, (5, 4), pool_size=2)


def test_attention_maps_needs_a_spatial_shape():
    with pytest.raises(ValueError, match="spatial_shape"):
        visualize.attention_maps(np.zeros((1, 1, 4, 4)))


def test_attention_maps_takes_grid_from_layer():
    inputs = keras.Input((6, 5, 4))
    layer = SelfAttention2D(pool_size=2)
    layer(inputs)
    scores = _coded_scores((6, 5), (3, 3), batch=1, heads=1)
    maps = visualize.attention_maps(scores, layer=layer, query=(0, 0))
    assert maps.shape == (1, 1, 3, 3)
    with pytest.raises(ValueError, match="pool_size=3"):
        visualize.attention_maps(scores, layer=layer, pool_size=3)
    with pytest.raises(TypeError, match="layer"):
        visualize.attention_maps(scores, (6, 5), layer="attention")


def test_upsample_attention_map_spreads_cells_over_their_block():
    cells = np.arange(6.0).reshape(3, 2)
    upsampled = visualize.upsample_attention_map(cells, (5, 4), pool_size=2)
    expected = np.array(
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3], [4, 4, 5, 5]]
    )
    np.testing.assert_array_equal(upsampled, expected)
    # Leading axes (batch, heads) pass through.
    stacked = visualize.upsample_attention_map(
        np.stack([cells, cells]), (5, 4), pool_size=2
    )
    assert stacked.shape == (2, 5, 4)
    np.testing.assert_array_equal(
        visualize.upsample_attention_map(cells, (3, 2)), cells
    )


@pytest.mark.parametrize("size,pool", [(5, 2), (5, 3), (5, 4), (9, 4), (7, 7)])
def test_upsample_matches_the_backend_max_pool(size, pool):
    """Position p belongs to the cell where max-pooling a one-hot at p
    lands, as the layer pools keys and values."""
    grid = -(-size // pool)
    cell_ids = np.arange(grid * grid, dtype="float32").reshape(grid, grid)
    upsampled = visualize.upsample_attention_map(cell_ids, (size, size), pool)
    one_hots = np.eye(size * size, dtype="float32").reshape(-1, size, size, 1)
    pooled = ops.convert_to_numpy(
        ops.max_pool(one_hots, pool, pool, padding="same")
    )
    landed = pooled.reshape(size * size, -1).argmax(axis=1)
    np.testing.assert_array_equal(upsampled.reshape(-1), landed)


def test_upsample_rejects_a_map_of_another_grid():
    with pytest.raises(ValueError, match="attention_map.shape"):
        visualize.upsample_attention_map(np.zeros((2, 2)), (5, 4), 2)


def _attention_model(pool_size=None):
    inputs = keras.Input((6, 6, 2))
    layer = SelfAttention2D(
        filters=4, num_heads=2, pool_size=pool_size, gamma=0.5, name="att"
    )
    x = layer(keras.layers.Conv2D(2, 1)(inputs))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs), layer


def test_attention_scores_model_matches_a_scoring_layer():
    model, layer = _attention_model(pool_size=2)
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype("float32")
    scores = visualize.attention_scores_model(
        model, layer
    ).predict(x, verbose=0)
    assert scores.shape == (3, 2, 36, 9)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    config = layer.get_config()
    config.update(return_attention_scores=True, name="reference")
    reference = SelfAttention2D.from_config(config)
    features = model.layers[1](x)
    reference(features)
    reference.set_weights(layer.get_weights())
    _, expected = reference(features)
    np.testing.assert_allclose(
        scores, ops.convert_to_numpy(expected), atol=1e-5
    )


def test_attention_scores_model_rejects_other_layers():
    model, _ = _attention_model()
    with pytest.raises(TypeError, match="layer"):
        visualize.attention_scores_model(model, model.layers[1])


def test_gamma_logger_writes_gamma_into_history_and_later_callbacks():
    model, layer = _attention_model()
    inner_inputs = keras.Input((6, 6, 2))
    outer = keras.Model(inner_inputs, model(inner_inputs), name="outer")
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    outer.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 6, 6, 2), "float32")
    history = outer.fit(
        x, np.ones((4, 1)), epochs=2, verbose=0,
        callbacks=[visualize.GammaLogger(), Recorder()],
    )
    key = f"gamma/{model.name}/att"
    assert len(history.history[key]) == 2
    assert history.history[key][-1] == pytest.approx(
        float(ops.convert_to_numpy(layer.gamma.value))
    )
    assert key in seen[-1]


def test_gamma_values_ignores_other_gammas():
    inputs = keras.Input((4, 4, 2))
    outputs = keras.layers.BatchNormalization()(inputs)
    assert visualize.gamma_values(keras.Model(inputs, outputs)) == {}


def test_gamma_logger_rejects_non_string_prefix():
    with pytest.raises(TypeError, match="prefix=1"):
        visualize.GammaLogger(prefix=1)


def test_plot_attention_maps_draws_a_readable_figure():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    scores = np.full((1, 2, 36, 9), 1.0 / 9.0)
    figure = visualize.plot_attention_maps(
        np.zeros((12, 12)), scores, [(0, 0), (5, 5)], (6, 6), pool_size=2,
        title="maps",
    )
    image_axes = [axis for axis in figure.axes if axis.images]
    assert len(image_axes) == 2 * 3
    titles = [axis.get_title() for axis in image_axes]
    assert "head 1" in titles and any("query (5, 5)" in t for t in titles)
    assert len(figure.axes) == 2 * 3 + 2  # One colorbar per query row.
    assert figure._suptitle.get_text() == "maps"
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_plot_attention_maps_rejects_bad_input():
    pytest.importorskip("matplotlib")
    scores = np.full((1, 1, 4, 4), 0.25)
    with pytest.raises(ValueError, match="image.shape"):
        visualize.plot_attention_maps(np.zeros((2, 2, 2)), scores, [(0, 0)],
                                      (2, 2))
    with pytest.raises(ValueError, match="Received: queries="):
        visualize.plot_attention_maps(np.zeros((2, 2)), scores, [], (2, 2))
    with pytest.raises(ValueError, match="2D maps only"):
        visualize.plot_attention_maps(
            np.zeros((2, 2)), np.zeros((1, 1, 4, 4)), [(0,)], (4,)
        )


def test_plot_attention_statistics_draws_each_statistic_per_layer():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    history = {
        "loss": [1.0, 0.5, 0.2],
        "attention/outer/att/gamma": [0.0, float("nan"), 0.2],
        "attention/outer/att/entropy": [1.0, float("nan"), 0.8],
        "attention/outer/att/entropy/head_1": [1.0, float("nan"), 0.6],
        "attention/top/entropy": [0.9, 0.9, 0.9],
    }
    figure = visualize.plot_attention_statistics(history, title="stats")
    assert [axis.get_title() for axis in figure.axes] == ["gamma", "entropy"]
    lines = {line.get_label(): line for line in figure.axes[1].lines}
    assert set(lines) == {"outer/att", "outer/att head 1", "top"}
    # The unmeasured (nan) epoch is left out.
    np.testing.assert_array_equal(lines["outer/att"].get_xdata(), [1, 3])
    np.testing.assert_array_equal(lines["outer/att"].get_ydata(), [1.0, 0.8])
    import matplotlib.pyplot as plt

    plt.close(figure)
    with pytest.raises(ValueError, match="AttentionMonitor"):
        visualize.plot_attention_statistics({"loss": [1.0]})


def test_plot_attention_distance_against_uniform():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    layer = SelfAttention2D(pool_size=2)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    layer.build(x.shape)
    layer.query_projection.kernel.assign(
        np.zeros(layer.query_projection.kernel.shape, "float32")
    )
    figure = visualize.plot_attention_distance(layer, x, bins=5)
    axis = figure.axes[0]
    trained, uniform = axis.patches
    # A zero query kernel is uniform attention: the two curves coincide,
    # and each distributes all of the attention mass.
    np.testing.assert_allclose(trained.get_data().values,
                               uniform.get_data().values, atol=1e-6)
    assert trained.get_data().values.sum() == pytest.approx(1.0)
    assert "16 queries" in axis.get_title()
    import matplotlib.pyplot as plt

    plt.close(figure)
    with pytest.raises(ValueError, match="bins"):
        visualize.plot_attention_distance(layer, x, bins=0)
