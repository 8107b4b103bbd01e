"""Property-based tests over random layer configurations and inputs.

Examples come from the project's hypothesis profile (registered in
conftest.py): 15 per test, derandomized, no deadline.
"""

import keras
import numpy as np
import pytest
from helpers import compiled_call
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_self_attention

from conv_self_attention import SelfAttention1D
from conv_self_attention import SelfAttention2D
from conv_self_attention import SelfAttention3D

CLASSES = {1: SelfAttention1D, 2: SelfAttention2D, 3: SelfAttention3D}
MAX_SIZE = {1: 9, 2: 6, 3: 3}
KERNELS = ("dense", "chunked", "fused")
DATA_FORMATS = ("channels_last", "channels_first")
to_numpy = keras.ops.convert_to_numpy

# Pools as large as the map leave one key position: Keras warns that such a
# softmax is constant, which is right here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:You are using a softmax over axis"
)


@st.composite
def cases(draw, pooling=True):
    """A layer configuration and a matching channels-last input shape."""
    rank = draw(st.sampled_from(sorted(CLASSES)))
    spatial = tuple(
        draw(st.integers(1, MAX_SIZE[rank])) for _ in range(rank)
    )
    num_heads = draw(st.integers(1, 3))
    pool_size = None
    if pooling and draw(st.booleans()):
        pool_size = tuple(draw(st.integers(1, size)) for size in spatial)
    kwargs = {
        "filters": draw(st.none() | st.integers(1, 12)),
        "num_heads": num_heads,
        "pool_size": pool_size,
        "use_scale": draw(st.booleans()),
        "gamma": draw(st.floats(0.1, 2.0)),
        "data_format": draw(st.sampled_from(DATA_FORMATS)),
        "attention_implementation": draw(st.sampled_from(KERNELS)),
        "chunk_size": draw(st.integers(1, 8)),
    }
    shape = (draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 12)))
    return rank, shape, kwargs, draw(st.integers(0, 2**16))


def _inputs(shape, seed, data_format, scale=1.0):
    """Channels-last `shape`, laid out in `data_format`."""
    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    x = x * np.float32(scale)
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    return x


def _to_positions(tensor, data_format):
    """`(B, N, C)` with positions in row-major order."""
    tensor = np.asarray(tensor)
    if data_format == "channels_first":
        tensor = np.moveaxis(tensor, 1, -1)
    return tensor.reshape(tensor.shape[0], -1, tensor.shape[-1])


def _from_positions(tensor, like, data_format):
    """Inverse of `_to_positions` for an array shaped like `like`."""
    if data_format == "channels_first":
        spatial_last = np.moveaxis(like, 1, -1).shape
        return np.moveaxis(tensor.reshape(spatial_last), -1, 1)
    return tensor.reshape(like.shape)


@given(cases())
def test_shapes_values_and_probabilities(case):
    """The drawn kernel runs and its values equal the reference; a twin
    with the same weights that returns scores (which forces `dense`) gives
    probabilities equal to the reference's (rows summing to 1); shapes
    equal `compute_output_shape`."""
    rank, shape, kwargs, seed = case
    keras.utils.set_random_seed(seed)
    layer = CLASSES[rank](**kwargs)
    x = _inputs(shape, seed, kwargs["data_format"])
    outputs = to_numpy(compiled_call(layer, x))
    assert layer.last_kernel.implementation == kwargs[
        "attention_implementation"
    ]
    assert outputs.shape == layer.compute_output_shape(x.shape)
    expected_outputs, expected_scores = reference_self_attention(layer, x)
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-4, atol=1e-4)
    scored = CLASSES[rank].from_config(
        {**layer.get_config(), "return_attention_scores": True}
    )
    scored.build(x.shape)
    scored.set_weights(layer.get_weights())
    scores = to_numpy(compiled_call(scored, x)[1])
    assert scores.shape == scored.compute_output_shape(x.shape)[1]
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert scores.dtype == np.float32
    assert (scores >= 0).all()
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)


@given(cases(pooling=False), st.data())
def test_permutation_equivariance_without_pooling(case, data):
    """Permuting the positions of the input permutes the outputs alike.

    The scores are not asked for, so every kernel is exercised.
    """
    rank, shape, kwargs, seed = case
    keras.utils.set_random_seed(seed)
    data_format = kwargs["data_format"]
    layer = CLASSES[rank](**kwargs)
    x = _inputs(shape, seed, data_format)
    positions = int(np.prod(shape[1:-1]))
    permutation = np.array(data.draw(st.permutations(range(positions))))
    permuted_x = _from_positions(
        _to_positions(x, data_format)[:, permutation], x, data_format
    )
    np.testing.assert_allclose(
        _to_positions(to_numpy(compiled_call(layer, permuted_x)), data_format),
        _to_positions(to_numpy(compiled_call(layer, x)), data_format)[
            :, permutation
        ],
        rtol=1e-5,
        atol=1e-5,
    )


@given(cases(), st.floats(1e2, 1e4), st.booleans())
def test_large_inputs_stay_finite(case, magnitude, return_scores):
    """Softmax over logits of ~1e8 stays finite: no NaN, rows sum to 1."""
    rank, shape, kwargs, seed = case
    keras.utils.set_random_seed(seed)
    layer = CLASSES[rank](return_attention_scores=return_scores, **kwargs)
    x = _inputs(shape, seed, kwargs["data_format"], scale=magnitude)
    result = compiled_call(layer, x)
    outputs, scores = result if return_scores else (result, None)
    expected_shape = layer.compute_output_shape(x.shape)
    assert tuple(outputs.shape) == (
        expected_shape[0] if return_scores else expected_shape
    )
    assert np.isfinite(to_numpy(outputs)).all()
    if return_scores:
        np.testing.assert_allclose(
            to_numpy(scores).sum(axis=-1), 1.0, atol=1e-5
        )
