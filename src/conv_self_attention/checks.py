"""Checks of integer arguments, shared by the layers, kernels, diagnostics
and plots so that each accepts the same values and words its error the
same way (Keras' wording: `Received: filters=0`)."""

import numpy as np


def is_int(value):
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
