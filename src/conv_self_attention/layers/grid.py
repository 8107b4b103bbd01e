"""The key/value grid: the one place that says how pooling shrinks a map."""

import math

from conv_self_attention.checks import pool_size as normalize_pool_size


def key_value_grid(spatial_shape, pool_size=None):
    """Returns the spatial shape of the key/value grid.

    Keys and values are max-pooled with `padding="same"` and strides equal
    to `pool_size`, so each axis of size `s` becomes `ceil(s / p)` (odd sizes
    keep their last row/column). Unknown sizes (`None`) stay unknown.

    Args:
        spatial_shape: the spatial sizes of the input map, e.g. `(28, 28)`.
        pool_size: `None`, an int, or a tuple with one int per spatial axis.

    Returns:
        A tuple with one size (or `None`) per spatial axis.

    Example:

    ```python
    >>> key_value_grid((28, 27), pool_size=2)
    (14, 14)
    ```
    """
    spatial_shape = tuple(spatial_shape)
    pools = normalize_pool_size(pool_size, len(spatial_shape))
    if pools is None:
        return spatial_shape
    return tuple(
        None if size is None else math.ceil(size / pool)
        for size, pool in zip(spatial_shape, pools, strict=True)
    )


def num_positions(spatial_shape):
    """Returns the number of positions of a grid, or `None` if unknown."""
    if any(size is None for size in spatial_shape):
        return None
    return math.prod(spatial_shape)
