"""How the layer initializes its projections: one initializer copy per
projection, seeds, and `query_key_init`, on every backend."""

import keras
import numpy as np
import pytest

from conv_self_attention import SelfAttention2D

PROJECTIONS = ("query_projection", "key_projection", "value_projection",
               "output_projection", "shortcut_projection")


def _kernels(input_shape=(None, 8, 8, 64), **kwargs):
    layer = SelfAttention2D(**kwargs)
    layer.build(input_shape)
    return {name: keras.ops.convert_to_numpy(getattr(layer, name).kernel)
            for name in PROJECTIONS if getattr(layer, name) is not None}


def _all_different(kernels):
    names = list(kernels)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = kernels[first], kernels[second]
            if a.shape == b.shape:
                assert not np.allclose(a, b), (first, second)


@pytest.mark.parametrize("kwargs", [
    {},
    {"key_channels": 16, "value_channels": 16},
    {"filters": 32, "key_channels": 8, "value_channels": 8},
    {"kernel_initializer": keras.initializers.GlorotUniform(seed=3),
     "key_channels": 8, "value_channels": 8},
    {"kernel_initializer": "orthogonal", "value_channels": 8},
])
def test_independent_kernels_are_all_different(kwargs):
    kernels = _kernels(query_key_init="independent", **kwargs)
    assert set(kernels) >= set(PROJECTIONS[:4])
    _all_different(kernels)


@pytest.mark.parametrize("kwargs", [
    {}, {"key_channels": 16, "value_channels": 16},
])
def test_mimetic_starts_the_key_kernel_as_the_query_kernel(kwargs):
    kernels = _kernels(query_key_init="mimetic", **kwargs)
    np.testing.assert_array_equal(kernels["key_projection"],
                                  kernels["query_projection"])
    del kernels["key_projection"]
    _all_different(kernels)


def test_the_same_global_seed_gives_the_same_weights():
    runs = []
    for seed in (5, 5, 6):
        keras.utils.set_random_seed(seed)
        runs.append(_kernels(filters=32))
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])
        assert not np.allclose(runs[0][name], runs[2][name]), name


def test_a_seeded_initializer_gives_the_same_kernels_on_every_build():
    initializer = keras.initializers.HeNormal(seed=11)
    first = _kernels(kernel_initializer=initializer, filters=32)
    keras.utils.set_random_seed(123)  # A seeded initializer ignores it.
    second = _kernels(kernel_initializer=initializer, filters=32)
    other = _kernels(kernel_initializer=keras.initializers.HeNormal(seed=12),
                     filters=32)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        assert not np.allclose(first[name], other[name]), name


def test_the_default_is_in_the_config_and_round_trips(tmp_path):
    layer = SelfAttention2D()
    assert layer.query_key_init == "independent"
    assert layer.get_config()["query_key_init"] == "independent"
    mimetic = SelfAttention2D(query_key_init="mimetic")
    clone = SelfAttention2D.from_config(mimetic.get_config())
    assert clone.query_key_init == "mimetic"
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, mimetic(inputs))
    path = str(tmp_path / "mimetic.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].query_key_init == "mimetic"
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)))


def test_a_config_saved_before_the_argument_existed_loads():
    config = SelfAttention2D(name="old").get_config()
    del config["query_key_init"]
    assert SelfAttention2D.from_config(config).query_key_init == (
        "independent")


@pytest.mark.parametrize("value", ["Mimetic", "same", None, 1])
def test_bad_query_key_init_is_refused(value):
    with pytest.raises(ValueError, match=(
            r"Expected one of \('independent', 'mimetic'\)\. Received: "
            rf"query_key_init={value!r}")):
        SelfAttention2D(query_key_init=value)


def test_a_mimetic_layer_trains_and_its_kernels_part():
    # On JAX, a key kernel sharing the query kernel's buffer broke `fit`.
    inputs = keras.Input((4, 4, 8))
    layer = SelfAttention2D(gamma=0.5, query_key_init="mimetic")
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 8)).astype("float32")
    model.fit(x, x[..., ::-1], epochs=2, batch_size=4, verbose=0)
    query, key = (keras.ops.convert_to_numpy(p.kernel) for p in (
        layer.query_projection, layer.key_projection))
    assert np.all(np.isfinite(query)) and not np.allclose(query, key)
