"""Validation of the self-attention layers' constructor arguments.

Each function returns the value to store, or raises a `ValueError` that
names the argument, says what is allowed and shows what was received
(Keras' wording: `Received: filters=0`).
"""

import math

import keras

from conv_self_attention.checks import positive_int

DATA_FORMATS = ("channels_last", "channels_first")


def default_channels(channels, num_heads):
    """Rounds `channels` up to a positive multiple of `num_heads`."""
    return max(1, math.ceil(channels / num_heads)) * num_heads


def head_multiple(name, value, num_heads):
    value = positive_int(name, value, allow_none=True)
    if value is not None and value % num_heads:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a multiple of "
            f"`num_heads`={num_heads}. Received: {name}={value}"
        )
    return value


def boolean(name, value):
    if not isinstance(value, bool):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a bool. "
            f"Received: {name}={value!r}"
        )
    return value


def finite_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a float. "
            f"Received: {name}={value!r}"
        )
    if not math.isfinite(value):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def data_format(value):
    if value is None:
        return keras.config.image_data_format()
    if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
        raise ValueError(
            "Invalid value for argument `data_format`. Expected one of "
            f"{DATA_FORMATS}. Received: data_format={value!r}"
        )
    return value.lower()


def keras_object(getter, name, identifier):
    """Resolves a Keras object identifier, naming the argument on failure."""
    try:
        return getter(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Invalid value for argument `{name}`: {error} "
            f"Received: {name}={identifier!r}"
        ) from None
