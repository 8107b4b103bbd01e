"""Semantics of the self-attention layers against the NumPy reference."""


import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import KerasTestCase
from helpers import gradients
from helpers import keras_keeps_autograd
from helpers import to_numpy
from reference import reference_self_attention

from conv_self_attention import SelfAttention1D
from conv_self_attention import SelfAttention2D
from conv_self_attention import SelfAttention3D
from conv_self_attention import SelfAttention_Conv2D
from conv_self_attention.diagnostics import attention_layers

CLASSES = {1: SelfAttention1D, 2: SelfAttention2D, 3: SelfAttention3D}

# (rank, input shape without batch (channels last), layer kwargs)
CONFIGS = {
    "2d_default": (2, (6, 5, 16), {}),
    "2d_heads_pool": (2, (7, 9, 16), {"num_heads": 2, "pool_size": 2}),
    "2d_odd_pool3": (2, (7, 8, 8), {"pool_size": (3, 2)}),
    "2d_filters_first_layer": (2, (6, 6, 1), {"filters": 8}),
    "2d_filters_bias_relu": (
        2,
        (5, 6, 6),
        {"filters": 12, "use_bias": True, "activation": "relu"},
    ),
    "2d_scale_channels": (
        2,
        (6, 6, 8),
        {"use_scale": True, "key_channels": 4, "value_channels": 6,
         "num_heads": 2},
    ),
    "2d_channels_first": (
        2,
        (6, 5, 8),
        {"data_format": "channels_first", "pool_size": 2, "num_heads": 2},
    ),
    "2d_spectral_norm": (
        2, (5, 5, 8), {"spectral_norm": True, "use_bias": True}
    ),
    "1d_heads": (1, (11, 8), {"num_heads": 4, "filters": 8}),
    "1d_pool_tanh": (1, (9, 6), {"pool_size": 4, "activation": "tanh"}),
    "3d_pool": (3, (3, 4, 5, 8), {"pool_size": 2, "num_heads": 2}),
}


def make_input(shape, data_format=None, batch=2, seed=0):
    x = np.random.default_rng(seed).normal(size=(batch, *shape))
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    return x.astype("float32")


def build_layer(rank, kwargs, gamma=0.7, scores=True):
    return CLASSES[rank](
        gamma=gamma, return_attention_scores=scores, **kwargs
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_numpy_reference(name):
    rank, shape, kwargs = CONFIGS[name]
    x = make_input(shape, kwargs.get("data_format"))
    layer = build_layer(rank, kwargs)
    outputs, scores = layer(x)
    expected_outputs, expected_scores = reference_self_attention(layer, x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(outputs), expected_outputs, atol=1e-4,
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(scores), expected_scores, atol=1e-5
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_output_shapes_match_compute_output_shape(name):
    rank, shape, kwargs = CONFIGS[name]
    x = make_input(shape, kwargs.get("data_format"))
    layer = build_layer(rank, kwargs)
    outputs, scores = layer(x)
    expected_outputs, expected_scores = layer.compute_output_shape(x.shape)
    assert tuple(outputs.shape) == expected_outputs
    assert tuple(scores.shape) == expected_scores
    assert keras.backend.standardize_dtype(scores.dtype) == "float32"
    symbolic_outputs, symbolic_scores = layer.compute_output_spec(
        keras.KerasTensor(x.shape)
    )
    assert symbolic_outputs.shape == expected_outputs
    assert symbolic_scores.dtype == "float32"


def test_first_layer_shape_from_seed_doc():
    inputs = keras.Input((28, 28, 1))
    outputs = SelfAttention2D(filters=8)(inputs)
    assert outputs.shape == (None, 28, 28, 8)
    assert SelfAttention2D()(outputs).shape == (None, 28, 28, 8)


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_heads_never_change_output_shape(num_heads):
    x = make_input((4, 4, 8))
    layer = SelfAttention2D(num_heads=num_heads, return_attention_scores=True)
    outputs, scores = layer(x)
    assert tuple(outputs.shape) == x.shape
    assert tuple(scores.shape) == (2, num_heads, 16, 16)


def test_default_channels_round_up_to_heads():
    layer = SelfAttention2D(filters=6, num_heads=4)
    layer.build((None, 4, 4, 3))
    assert layer.resolved_key_channels == 4
    assert layer.resolved_value_channels == 4


def test_scores_rows_sum_to_one():
    x = make_input((7, 6, 8)) * 10
    _, scores = SelfAttention2D(num_heads=2, pool_size=2,
                                return_attention_scores=True)(x)
    rows = keras.ops.convert_to_numpy(keras.ops.sum(scores, axis=-1))
    np.testing.assert_allclose(rows, np.ones_like(rows), atol=1e-5)


def test_permutation_equivariance_without_pooling():
    x = make_input((5, 1, 8))  # a 5x1 map: permuting rows permutes positions
    permutation = np.array([3, 0, 4, 1, 2])
    layer = SelfAttention2D(num_heads=2, gamma=0.9, filters=6)
    outputs = keras.ops.convert_to_numpy(layer(x))
    permuted = keras.ops.convert_to_numpy(layer(x[:, permutation]))
    np.testing.assert_allclose(permuted, outputs[:, permutation], atol=1e-5)


@pytest.mark.parametrize("filters", [None, 12])
def test_gamma_zero_reduces_to_shortcut(filters):
    x = make_input((5, 5, 8))
    layer = SelfAttention2D(filters=filters, gamma=0.0, use_bias=True)
    outputs = keras.ops.convert_to_numpy(layer(x))
    if filters is None:
        np.testing.assert_array_equal(outputs, x)
    else:
        shortcut = keras.ops.convert_to_numpy(layer.shortcut_projection(x))
        np.testing.assert_array_equal(outputs, shortcut)


def test_gradients_reach_every_weight_including_gamma():
    x = make_input((5, 6, 8))
    layer = SelfAttention2D(
        filters=12, num_heads=2, gamma=0.5, use_bias=True, pool_size=2
    )
    layer.build(x.shape)
    _, _, grads = gradients(layer, [x])
    assert len(grads) == 11  # 5 kernels, 5 biases, gamma
    for path, grad in grads.items():
        assert np.all(np.isfinite(grad)), path
        assert np.abs(grad).max() > 0, f"no gradient reaches {path}"


def test_gamma_zero_gives_projections_exactly_zero_gradient():
    x = make_input((5, 6, 8))
    layer = SelfAttention2D(gamma=0.0)
    layer.build(x.shape)
    _, _, grads = gradients(layer, [x])
    for path, grad in grads.items():
        if path.endswith("gamma"):
            assert np.abs(grad).max() > 0, path
        else:
            np.testing.assert_array_equal(grad, np.zeros_like(grad), path)


def test_gamma_is_a_scalar_float32_weight():
    layer = SelfAttention2D(gamma=0.25, gamma_trainable=False)
    layer.build((None, 4, 4, 8))
    assert tuple(layer.gamma.shape) == ()
    assert layer.gamma.dtype == "float32"
    assert layer.gamma.path.endswith("gamma")
    assert float(keras.ops.convert_to_numpy(layer.gamma)) == 0.25
    assert all(w is not layer.gamma for w in layer.trainable_weights)


def spectral_model(shape):
    inputs = keras.Input(shape)
    x = SelfAttention2D(filters=6, spectral_norm=True, gamma=0.5,
                        use_bias=True, pool_size=2)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


def test_spectral_norm_inference_matches_training_after_fit():
    x = make_input((6, 6, 4), batch=8)
    y = np.random.default_rng(1).normal(size=(8, 6)).astype("float32")
    model = spectral_model(x.shape[1:])
    layer = model.layers[1]
    u_before = keras.ops.convert_to_numpy(layer.query_projection.u).copy()
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    u_after = keras.ops.convert_to_numpy(layer.query_projection.u)
    assert np.abs(u_after - u_before).max() > 0, "u was never updated"
    predicted = model.predict(x, verbose=0)
    eager_inference = keras.ops.convert_to_numpy(model(x, training=False))
    # The reference reads `u` before the training call below updates it.
    expected, _ = reference_self_attention(layer, x)
    eager_training = keras.ops.convert_to_numpy(model(x, training=True))
    np.testing.assert_allclose(predicted, eager_inference, atol=1e-5)
    np.testing.assert_allclose(eager_training, eager_inference, atol=1e-5)
    np.testing.assert_allclose(
        predicted, expected.mean(axis=(1, 2)), atol=1e-4, rtol=1e-4
    )


def test_spectral_norm_kernel_has_unit_spectral_norm_after_training():
    x = make_input((6, 6, 4), batch=8)
    y = np.zeros((8, 6), "float32")
    model = spectral_model(x.shape[1:])
    model.fit(x, y, epochs=20, batch_size=8, verbose=0)
    projection = model.layers[1].value_projection
    kernel = keras.ops.convert_to_numpy(projection.normalized_kernel())
    assert abs(np.linalg.norm(kernel, ord=2) - 1.0) < 0.05


def test_keras_save_and_load_give_identical_outputs(tmp_path):
    x = make_input((6, 6, 4), batch=8)
    model = spectral_model(x.shape[1:])
    model.fit(x, np.zeros((8, 6), "float32"), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.layers[1], SelfAttention2D)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )


@pytest.mark.parametrize("cls", [SelfAttention2D, SelfAttention_Conv2D])
def test_config_round_trip(cls):
    layer = cls(
        filters=8, num_heads=2, pool_size=(2, 3), use_scale=True, gamma=0.3,
        activation="relu", use_bias=True, spectral_norm=True,
        return_attention_scores=True, data_format="channels_first",
        attention_implementation="dense", chunk_size=64,
        kernel_regularizer="l2", kernel_constraint="max_norm",
        kernel_initializer="he_normal", name="attention",
    )
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is cls
    assert restored.get_config() == config


def test_seed_class_defaults_and_deprecated_spelling():
    layer = SelfAttention_Conv2D(filters=8)
    assert layer.get_config()["gamma"] == 0.01
    with pytest.warns(DeprecationWarning, match="num_head"):
        layer = SelfAttention_Conv2D(num_head=2)
    assert layer.num_heads == 2
    with pytest.raises(ValueError, match="num_head"):
        SelfAttention_Conv2D(num_head=2, num_heads=2)


def test_other_classes_reject_unknown_keywords():
    with pytest.raises((TypeError, ValueError), match="num_head"):
        SelfAttention2D(num_head=2)


class SubclassedModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.attention = SelfAttention2D(filters=8, gamma=0.5, pool_size=2)
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3)

    def call(self, inputs):
        return self.head(self.pool(self.attention(inputs)))


def sequential_model():
    return keras.Sequential([
        keras.Input((None, None, 1)),
        SelfAttention_Conv2D(filters=8),
        SelfAttention2D(num_heads=2, pool_size=2),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])


def functional_model():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = SelfAttention2D(gamma=0.5)(x)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalMaxPooling2D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "make_model", [sequential_model, functional_model, SubclassedModel]
)
def test_fits_in_every_model_style(make_model):
    """Training lowers the loss and moves the attention's own weights
    (not only the convolutions around it)."""
    x = make_input((9, 7, 1), batch=8)
    y = np.random.default_rng(2).integers(0, 3, size=8)
    model = make_model()
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(True),
    )
    model(x[:1])  # Builds every model style.
    weights = [w for _, layer in attention_layers(model)
               for w in layer.trainable_weights]
    before = {w.path: to_numpy(w) for w in weights}
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    for weight in weights:
        change = np.abs(to_numpy(weight) - before[weight.path]).max()
        assert change > 0, weight.path
    assert model.predict(x[:3, :5, :6], verbose=0).shape == (3, 3)


def test_unknown_spatial_sizes_in_symbolic_shapes():
    inputs = keras.Input((None, None, 8))
    outputs, scores = SelfAttention2D(
        pool_size=2, return_attention_scores=True
    )(inputs)
    assert outputs.shape == (None, None, None, 8)
    assert scores.shape == (None, 1, None, None)


class LayerTest(KerasTestCase):
    def test_run_layer_test_2d(self):
        self.run_layer_test(
            SelfAttention2D,
            init_kwargs={"filters": 8, "num_heads": 2, "gamma": 0.1,
                         "pool_size": 2},
            input_shape=(2, 6, 6, 4),
            expected_output_shape=(2, 6, 6, 8),
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            supports_masking=False,
        )

    def test_run_layer_test_2d_spectral_norm(self):
        self.run_layer_test(
            SelfAttention2D,
            init_kwargs={"spectral_norm": True, "gamma": 0.1},
            input_shape=(2, 5, 5, 8),
            expected_output_shape=(2, 5, 5, 8),
            expected_num_trainable_weights=5,
            expected_num_non_trainable_weights=4,
            expected_num_seed_generators=0,
            supports_masking=False,
        )


class ShapeRecordingAttention(SelfAttention2D):
    """Records the shapes the kernels receive (via the override point)."""

    def _compute_attention(self, query, key, value, training=False):
        self.seen_shapes = (tuple(query.shape), tuple(key.shape))
        return super()._compute_attention(query, key, value, training)


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="TF graph with None batch"
)
def test_kernels_see_static_positions_when_only_batch_is_unknown():
    import tensorflow as tf

    layer = ShapeRecordingAttention(num_heads=2, pool_size=2)
    layer.build((None, 6, 5, 8))
    run = tf.function(
        layer, input_signature=[tf.TensorSpec((None, 6, 5, 8), "float32")]
    )
    run.get_concrete_function()
    assert layer.seen_shapes == ((None, 30, 2, 1), (None, 9, 2, 1))


@pytest.mark.meta_device
@pytest.mark.gpu_specific
@pytest.mark.skipif(
    BACKEND != "torch", reason="torch autograd on its device"
)
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize(
    "implementation", ["auto", "dense", "chunked", "fused"]
)
def test_backward_pass_stays_on_keras_device(policy, implementation):
    """A training step's gradients, for the input and every trainable
    weight (spectral norm included), are on Keras' device with their
    variables' shapes: a CPU tensor mixed in fails here on a GPU, or in
    `make test-meta`, where `meta` stands in for one."""
    keras.config.set_dtype_policy(policy)
    layer = SelfAttention2D(
        num_heads=2, pool_size=2, gamma=0.5, spectral_norm=True,
        attention_implementation=implementation,
    )
    x = keras.ops.convert_to_tensor(
        np.random.default_rng(0).normal(size=(2, 9, 8, 16)), "float32"
    )
    layer.build(x.shape)
    with keras_keeps_autograd():
        x = x.detach().requires_grad_(True)
        outputs = layer(x, training=True)
        keras.ops.sum(keras.ops.square(keras.ops.cast(outputs, "float32"))
                      ).backward()
    assert keras.backend.standardize_dtype(outputs.dtype) == (
        layer.compute_dtype)
    here = outputs.device
    assert (x.grad.device, x.grad.shape) == (here, x.shape)
    for weight in layer.trainable_weights:
        grad = weight.value.grad
        assert grad is not None, weight.path
        assert (grad.device, tuple(grad.shape)) == (here, weight.shape)
