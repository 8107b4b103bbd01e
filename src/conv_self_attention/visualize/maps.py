"""Attention scores as spatial maps over the input and key/value grids.

The layer's scores have shape `(batch, num_heads, N, M)`: `N` query
positions numbered row-major over the input map and `M` key/value positions
numbered row-major over the key/value grid. With pooling that grid is
smaller than the input map, and `M` alone does not say its shape, so the
helpers here take the input spatial shape and `pool_size` (or the layer,
which knows its `pool_size`).

The plots are in `conv_self_attention.visualize.plots`.
"""

import math

import keras
import numpy as np

from conv_self_attention.checks import int_tuple
from conv_self_attention.checks import is_int
from conv_self_attention.checks import pool_size as normalize_pool_size
from conv_self_attention.layers import BaseSelfAttention
from conv_self_attention.layers import key_value_grid


def query_index(position, spatial_shape):
    """Returns the row-major index of a query position.

    Args:
        position: tuple of ints, one int per spatial axis, e.g. `(row, col)`.
        spatial_shape: tuple of ints, the spatial shape of the layer's input,
            e.g. `(16, 16)`.

    Returns:
        The index `n` of that position along the `N` axis of the scores.

    Example:

    ```python
    >>> from conv_self_attention.visualize import query_index
    >>> query_index((1, 2), (3, 4))
    6
    ```
    """
    position = int_tuple("position", position)
    spatial_shape = int_tuple("spatial_shape", spatial_shape)
    if len(position) != len(spatial_shape) or not all(
        0 <= index < size
        for index, size in zip(position, spatial_shape, strict=True)
    ):
        raise ValueError(
            "Each coordinate of `position` must lie in `[0, size)` of the "
            f"matching axis of `spatial_shape={spatial_shape}`. "
            f"Received: position={position}"
        )
    return int(np.ravel_multi_index(position, spatial_shape))


def query_position(index, spatial_shape):
    """Returns the position (e.g. `(row, col)`) of a row-major query index.

    The inverse of `query_index`.

    Args:
        index: int, the row-major index of a query.
        spatial_shape: tuple of ints, the spatial sizes of the map.

    Returns:
        A tuple of ints, one per spatial axis.

    Example:

    ```python
    >>> from conv_self_attention.visualize import query_position
    >>> query_position(6, (3, 4))
    (1, 2)
    ```
    """
    spatial_shape = int_tuple("spatial_shape", spatial_shape)
    size = math.prod(spatial_shape)
    if not is_int(index) or not 0 <= index < size:
        raise ValueError(
            f"`index` must be an int in `[0, {size})` for "
            f"`spatial_shape={spatial_shape}`. Received: index={index!r}"
        )
    return tuple(int(i) for i in np.unravel_index(index, spatial_shape))


def attention_maps(
    scores, spatial_shape=None, pool_size=None, *, layer=None, query=None
):
    """Reshapes attention scores into spatial maps over the key/value grid.

    Args:
        scores: array, `(batch, num_heads, N, M)` scores, as returned by a layer
            built with `return_attention_scores=True` (tensor or array).
        spatial_shape: tuple or None, spatial shape of the layer's input, e.g.
            `(16, 16)`. May be omitted when `layer` was called on a symbolic
            input.
        pool_size: int or tuple or None, the layer's `pool_size`. Taken from
            `layer` if given.
        layer: BaseSelfAttention or None, optional self-attention layer that
            produced `scores`.
        query: tuple or int or None, optional query position (e.g. `(row, col)`)
            or row-major index: return only the maps of that query.

    Returns:
        A NumPy array of shape `(batch, num_heads, *spatial, *kv_grid)`, or
        `(batch, num_heads, *kv_grid)` when `query` is given, where
        `kv_grid = key_value_grid(spatial_shape, pool_size)`.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import attention_maps
    >>> scores = np.full((1, 2, 16, 4), 0.25)  # 4x4 input, pool_size=2
    >>> attention_maps(scores, (4, 4), pool_size=2, query=(0, 3)).shape
    (1, 2, 2, 2)
    ```
    """
    spatial_shape, pool_size = _resolve_grid(spatial_shape, pool_size, layer)
    grid = key_value_grid(spatial_shape, pool_size)
    scores = np.asarray(keras.ops.convert_to_numpy(scores))
    expected = (math.prod(spatial_shape), math.prod(grid))
    if scores.ndim != 4 or scores.shape[2:] != expected:
        raise ValueError(
            "`scores` must have shape `(batch, num_heads, N, M)` with "
            f"(N, M) = {expected} for spatial_shape={spatial_shape} and "
            f"pool_size={pool_size}. Received: scores.shape={scores.shape}"
        )
    if query is None:
        return scores.reshape(scores.shape[:2] + spatial_shape + grid)
    if not is_int(query):
        query = query_index(query, spatial_shape)
    else:
        query_position(query, spatial_shape)  # Validates the index.
    return scores[:, :, query].reshape(scores.shape[:2] + grid)


def upsample_attention_map(attention_map, spatial_shape, pool_size=None):
    """Spreads maps over the key/value grid back onto the input map.

    Each key/value cell is the max-pool of a `pool_size` block of the input;
    every input position gets the weight of the cell that covers it. With
    `padding="same"` the blocks start at `-(pad // 2)`, where
    `pad = grid * pool - size`, so the repeated map is cropped from that
    offset (an odd padding puts its extra row/column at the end).

    Args:
        attention_map: array, array `(..., *kv_grid)`.
        spatial_shape: tuple of ints, spatial shape of the layer's input.
        pool_size: int or tuple or None, the layer's `pool_size` (`None`:
            returned unchanged).

    Returns:
        A NumPy array `(..., *spatial_shape)`.
    """
    spatial_shape = int_tuple("spatial_shape", spatial_shape)
    attention_map = np.asarray(keras.ops.convert_to_numpy(attention_map))
    grid = key_value_grid(spatial_shape, pool_size)
    rank = len(spatial_shape)
    if attention_map.shape[attention_map.ndim - rank :] != grid:
        raise ValueError(
            f"The last {rank} axes of `attention_map` must be the key/value "
            f"grid {grid}. Received: attention_map.shape="
            f"{attention_map.shape}"
        )
    if pool_size is None:
        return attention_map
    pools = normalize_pool_size(pool_size, rank)
    lead = attention_map.ndim - rank
    axes = zip(spatial_shape, grid, pools, strict=True)
    for axis, (size, cells, pool) in enumerate(axes):
        start = (cells * pool - size) // 2
        attention_map = np.repeat(attention_map, pool, axis=lead + axis)
        attention_map = np.take(
            attention_map, range(start, start + size), axis=lead + axis
        )
    return attention_map


def attention_scores_model(model, layer):
    """Builds a model from `model`'s inputs to `layer`'s attention scores.

    `layer` was typically built with `return_attention_scores=False`. This
    makes a twin layer with the same config but
    `return_attention_scores=True`, calls it on `layer`'s symbolic input
    (so everything upstream is shared with `model`) and copies `layer`'s
    current weights into it. The twin is a snapshot: build the scores model
    again after further training.

    Args:
        model: keras.Model, a functional or sequential `keras.Model` containing
            `layer`.
        layer: BaseSelfAttention, a self-attention layer of `model`, called
            once.

    Returns:
        A `keras.Model` mapping `model.inputs` to scores of shape
        `(batch, num_heads, N, M)`.

    Example:

    ```python
    >>> import keras
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> from conv_self_attention import attention_maps
    >>> from conv_self_attention import attention_scores_model
    >>> inputs = keras.Input((8, 8, 3))
    >>> hidden = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    >>> layer = SelfAttention2D(num_heads=2, pool_size=2)
    >>> model = keras.Model(inputs, layer(hidden))
    >>> x = np.random.default_rng(0).random((4, 8, 8, 3))
    >>> scores = attention_scores_model(model, layer).predict(x, verbose=0)
    >>> scores.shape  # (batch, num_heads, N, M)
    (4, 2, 64, 16)
    >>> attention_maps(scores, layer=layer, query=(4, 4)).shape
    (4, 2, 4, 4)
    ```
    """
    _check_attention_layer(layer)
    config = layer.get_config()
    config.update(return_attention_scores=True, name=f"{layer.name}_scores")
    twin = type(layer).from_config(config)
    _, scores = twin(layer.input)
    twin.set_weights(layer.get_weights())
    return keras.Model(model.inputs, scores, name=f"{model.name}_scores")


def _check_attention_layer(layer):
    if not isinstance(layer, BaseSelfAttention):
        raise TypeError(
            "`layer` must be a self-attention layer of this package. "
            f"Received: layer={layer!r}"
        )


def _resolve_grid(spatial_shape, pool_size, layer):
    """Returns `(spatial_shape, pool_size)` from the arguments or `layer`."""
    if layer is not None:
        _check_attention_layer(layer)
        if pool_size is not None and layer.pool_size != normalize_pool_size(
            pool_size, layer.rank
        ):
            raise ValueError(
                "`pool_size` disagrees with `layer.pool_size="
                f"{layer.pool_size}`. Received: pool_size={pool_size}"
            )
        pool_size = layer.pool_size
        if spatial_shape is None:
            spatial_shape = _layer_spatial_shape(layer)
    if spatial_shape is None:
        raise ValueError(
            "`spatial_shape` is required unless `layer` was called on a "
            "symbolic input of known size. Received: spatial_shape=None"
        )
    spatial_shape = int_tuple("spatial_shape", spatial_shape)
    key_value_grid(spatial_shape, pool_size)  # Validates `pool_size`.
    return spatial_shape, pool_size


def _layer_spatial_shape(layer):
    try:
        shape = tuple(layer.input.shape)
    except (AttributeError, ValueError):
        return None
    spatial = layer.spatial_shape(shape)
    return None if None in spatial else spatial
