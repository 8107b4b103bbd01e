"""Wrong usages of the layers: each raises a clear error naming the culprit.

Every row of the tables gives the wrong usage, the exception type and a
piece of text the message must contain (the argument's name, or what about
the inputs is wrong), so that a user can tell what to fix.
"""

import json

import keras
import numpy as np
import pytest

from conv_self_attention import SelfAttention1D
from conv_self_attention import SelfAttention2D
from conv_self_attention import SelfAttention3D
from conv_self_attention import SelfAttention_Conv2D

# (id, constructor keyword arguments, exception type, text in the message)
CONSTRUCTOR_CASES = [
    ("filters_zero", {"filters": 0}, ValueError, "filters"),
    ("filters_negative", {"filters": -3}, ValueError, "filters"),
    ("filters_string", {"filters": "8"}, ValueError, "filters"),
    ("filters_float", {"filters": 8.0}, ValueError, "filters"),
    ("filters_bool", {"filters": True}, ValueError, "filters"),
    ("num_heads_zero", {"num_heads": 0}, ValueError, "num_heads"),
    ("num_heads_string", {"num_heads": "2"}, ValueError, "num_heads"),
    ("num_heads_none", {"num_heads": None}, ValueError, "num_heads"),
    (
        "key_channels_not_head_multiple",
        {"key_channels": 6, "num_heads": 4},
        ValueError,
        "key_channels",
    ),
    (
        "key_channels_string",
        {"key_channels": "4"},
        ValueError,
        "key_channels",
    ),
    (
        "value_channels_zero",
        {"value_channels": 0},
        ValueError,
        "value_channels",
    ),
    (
        "value_channels_not_head_multiple",
        {"value_channels": 5, "num_heads": 2},
        ValueError,
        "value_channels",
    ),
    ("pool_size_zero", {"pool_size": 0}, ValueError, "pool_size"),
    ("pool_size_wrong_length", {"pool_size": (2,)}, ValueError, "pool_size"),
    ("pool_size_string", {"pool_size": "2"}, ValueError, "pool_size"),
    ("pool_size_float_entry", {"pool_size": (2, 2.5)}, ValueError, "pool_size"),
    ("use_scale_string", {"use_scale": "yes"}, ValueError, "use_scale"),
    ("gamma_string", {"gamma": "0.1"}, ValueError, "gamma"),
    ("gamma_nan", {"gamma": float("nan")}, ValueError, "gamma"),
    ("gamma_none", {"gamma": None}, ValueError, "gamma"),
    (
        "gamma_trainable_int",
        {"gamma_trainable": 1},
        ValueError,
        "gamma_trainable",
    ),
    (
        "activation_unknown",
        {"activation": "no_such_fn"},
        ValueError,
        "activation",
    ),
    ("use_bias_none", {"use_bias": None}, ValueError, "use_bias"),
    (
        "spectral_norm_string",
        {"spectral_norm": "true"},
        ValueError,
        "spectral_norm",
    ),
    (
        "return_attention_scores_int",
        {"return_attention_scores": 1},
        ValueError,
        "return_attention_scores",
    ),
    ("data_format_unknown", {"data_format": "NHWC"}, ValueError, "data_format"),
    (
        "attention_implementation_unknown",
        {"attention_implementation": "flash"},
        ValueError,
        "attention_implementation",
    ),
    ("chunk_size_zero", {"chunk_size": 0}, ValueError, "chunk_size"),
    ("chunk_size_string", {"chunk_size": "64"}, ValueError, "chunk_size"),
    (
        "kernel_initializer_unknown",
        {"kernel_initializer": "no_such_init"},
        ValueError,
        "kernel_initializer",
    ),
    (
        "kernel_regularizer_unknown",
        {"kernel_regularizer": "no_such_reg"},
        ValueError,
        "kernel_regularizer",
    ),
    (
        "kernel_constraint_unknown",
        {"kernel_constraint": "no_such_constraint"},
        ValueError,
        "kernel_constraint",
    ),
    ("unknown_keyword", {"num_head": 2}, ValueError, "num_head"),
]


@pytest.mark.parametrize(
    "kwargs, error, text",
    [case[1:] for case in CONSTRUCTOR_CASES],
    ids=[case[0] for case in CONSTRUCTOR_CASES],
)
def test_constructor_rejects(kwargs, error, text):
    with pytest.raises(error) as raised:
        SelfAttention2D(**kwargs)
    _check_message(raised.value, error, text)


def _check_message(exception, error, name):
    """Exactly `error` (not Keras' generic wrapper), in the package's
    form: the argument's name, then the value received."""
    message = str(exception)
    assert type(exception) is error, message
    assert name in message, message
    if message.startswith("Unrecognized keyword arguments"):
        return  # Keras' own words, which name the keyword and its value.
    assert "Received: " in message, message
    assert message.index(name) < message.index("Received: "), message


@pytest.mark.parametrize(
    "kwargs, error, text",
    [case[1:] for case in CONSTRUCTOR_CASES],
    ids=[case[0] for case in CONSTRUCTOR_CASES],
)
def test_from_config_rejects(kwargs, error, text):
    # A loaded config must fail with the same clear error as the
    # constructor, not with Keras' generic deserialization `TypeError`.
    config = {**SelfAttention2D().get_config(), **kwargs}
    with pytest.raises(error) as raised:
        SelfAttention2D.from_config(config)
    _check_message(raised.value, error, text)


def test_numpy_integers_are_stored_as_python_ints():
    # Sizes from a NumPy sweep are accepted, and stored so that the config
    # still serializes to JSON (a `.keras` file's format).
    layer = SelfAttention2D(
        filters=np.int64(8), num_heads=np.int32(2),
        key_channels=np.int64(4), pool_size=(np.int64(2), 2),
        chunk_size=np.int16(64),
    )
    config = layer.get_config()
    names = ("filters", "num_heads", "key_channels", "chunk_size")
    assert [type(config[name]) for name in names] == [int] * 4
    assert [type(size) for size in config["pool_size"]] == [int, int]
    assert json.loads(json.dumps(config))["pool_size"] == [2, 2]


def _floats(*shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def _call_built_with_other_channels():
    layer = SelfAttention2D()
    layer(_floats(1, 4, 4, 8))
    layer(_floats(1, 4, 4, 6))


def _call_channels_first_built_with_other_channels():
    layer = SelfAttention2D(data_format="channels_first")
    layer(_floats(1, 8, 4, 4))
    layer(_floats(1, 4, 4, 8))


def _symbolic_unknown_channels():
    SelfAttention2D()(keras.Input((4, 4, None)))


def _build_wrong_rank():
    SelfAttention2D().build((None, 4, 8))


def _output_shape_wrong_rank():
    SelfAttention1D().compute_output_shape((None, 4, 4, 8))


def _conv2d_both_head_spellings():
    SelfAttention_Conv2D(num_head=2, num_heads=2)


# (id, wrong usage, exception type, text in the message)
CALL_CASES = [
    (
        "rank3_into_2d",
        lambda: SelfAttention2D()(_floats(2, 4, 8)),
        ValueError,
        "ndim=4",
    ),
    (
        "rank5_into_2d",
        lambda: SelfAttention2D()(_floats(1, 2, 4, 4, 8)),
        ValueError,
        "ndim=4",
    ),
    (
        "rank4_into_1d",
        lambda: SelfAttention1D()(_floats(1, 4, 4, 8)),
        ValueError,
        "ndim=3",
    ),
    (
        "rank4_into_3d",
        lambda: SelfAttention3D()(_floats(1, 4, 4, 8)),
        ValueError,
        "ndim=5",
    ),
    ("build_wrong_rank", _build_wrong_rank, ValueError, "input_shape"),
    (
        "output_shape_wrong_rank",
        _output_shape_wrong_rank,
        ValueError,
        "rank 3",
    ),
    (
        "channels_mismatch_after_build",
        _call_built_with_other_channels,
        ValueError,
        "axis -1",
    ),
    (
        "channels_first_mismatch_after_build",
        _call_channels_first_built_with_other_channels,
        ValueError,
        "axis 1",
    ),
    ("unknown_channels", _symbolic_unknown_channels, ValueError, "channel"),
    (
        "empty_spatial_size",
        lambda: SelfAttention2D()(_floats(1, 0, 4, 8)),
        ValueError,
        "spatial size",
    ),
    (
        "empty_spatial_size_channels_first",
        lambda: SelfAttention2D(data_format="channels_first")(
            _floats(1, 8, 4, 0)
        ),
        ValueError,
        "spatial size",
    ),
    (
        "pool_larger_than_map",
        lambda: SelfAttention2D(pool_size=(2, 8))(_floats(1, 4, 4, 8)),
        ValueError,
        "pool_size",
    ),
    (
        "integer_inputs",
        lambda: SelfAttention2D()(np.ones((1, 4, 4, 8), "int32")),
        TypeError,
        "inputs.dtype=int32",
    ),
    (
        "bool_inputs",
        lambda: SelfAttention1D()(np.ones((1, 4, 8), "bool")),
        TypeError,
        "inputs.dtype=bool",
    ),
    (
        "integer_symbolic_inputs",
        lambda: SelfAttention2D()(keras.Input((4, 4, 8), dtype="int32")),
        TypeError,
        "inputs.dtype=int32",
    ),
    (
        "both_head_spellings",
        _conv2d_both_head_spellings,
        ValueError,
        "num_head",
    ),
    (
        "pool_size_wrong_length_3d",
        lambda: SelfAttention3D(pool_size=(2, 2)),
        ValueError,
        "pool_size",
    ),
]


@pytest.mark.parametrize(
    "usage, error, text",
    [case[1:] for case in CALL_CASES],
    ids=[case[0] for case in CALL_CASES],
)
def test_wrong_usage_raises(usage, error, text):
    with pytest.raises(error, match=text):
        usage()
