"""Argument checks, the one home of validation for the whole package.

The layers, kernels, diagnostics and plots validate through these, so that
each accepts the same values (Python and NumPy ints and bools alike), stores
plain Python values (configs stay JSON) and words its error the same way:
what must hold, then Keras' `Received: filters=0`.
"""

import math

import keras
import numpy as np

DATA_FORMATS = ("channels_last", "channels_first")


def is_int(value):
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def positive_int(name, value, allow_none=False):
    """Returns `value` as a Python int, or `None` when allowed and given.

    Raises:
        ValueError: naming `name` and the value received, unless `value` is
            a positive (Python or NumPy) int, or `None` with `allow_none`.
    """
    if value is None and allow_none:
        return None
    if not is_int(value) or value < 1:
        expected = "a positive int"
        if allow_none:
            expected = "`None` or " + expected
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def non_negative_int(name, value):
    """Returns `value` as a Python int; `ValueError` unless an int >= 0."""
    if not is_int(value) or value < 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a non-negative "
            f"int. Received: {name}={value!r}"
        )
    return int(value)


def boolean(name, value):
    """Returns `value` as a Python bool; `ValueError` unless a (NumPy)
    bool. Ints are refused: `per_head=1` is more likely a mistake."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a bool. "
            f"Received: {name}={value!r}"
        )
    return bool(value)


def finite_float(name, value):
    """Returns `value` as a Python float; `ValueError` unless a finite
    real number (not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
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


def one_of(name, value, allowed):
    """Returns `value`; `ValueError` unless it is one of `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected one of "
            f"{tuple(allowed)}. Received: {name}={value!r}"
        )
    return value


def int_tuple(name, value):
    """Returns `value` as a non-empty tuple of Python ints, else
    `ValueError`."""
    try:
        values = tuple(value)
    except TypeError:
        values = None
    if not values or not all(is_int(v) for v in values):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a non-empty "
            f"tuple of ints. Received: {name}={value!r}"
        )
    return tuple(int(v) for v in values)


def data_format(value):
    """`None` to Keras' image data format; else a known format, lowered."""
    if value is None:
        return keras.config.image_data_format()
    if isinstance(value, str):
        value = value.lower()
    return one_of("data_format", value, DATA_FORMATS)


def head_multiple(name, value, num_heads):
    """`None`, or a positive int that `num_heads` divides."""
    value = positive_int(name, value, allow_none=True)
    if value is not None and value % num_heads:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a multiple of "
            f"`num_heads`={num_heads}. Received: {name}={value}"
        )
    return value


def keras_object(getter, name, identifier):
    """Resolves a Keras object identifier, naming the argument on failure."""
    try:
        return getter(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Invalid value for argument `{name}`: {error} "
            f"Received: {name}={identifier!r}"
        ) from None


def pool_size(pool_size, rank):
    """Returns `pool_size` as a `rank`-tuple of positive ints, or `None`.

    Raises:
        ValueError: if `pool_size` is not a positive int or a `rank`-tuple
            of positive ints.
    """
    if pool_size is None:
        return None
    values = (pool_size,) * rank if is_int(pool_size) else pool_size
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != rank
        or not all(is_int(value) and value >= 1 for value in values)
    ):
        raise ValueError(
            "Invalid value for argument `pool_size`. Expected `None`, a "
            f"positive int or a tuple of {rank} positive ints. "
            f"Received: pool_size={pool_size!r}"
        )
    return tuple(int(value) for value in values)
