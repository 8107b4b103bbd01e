"""Shapes the self-attention layers check and reshape by."""

import math

import keras
from keras import ops

from conv_self_attention.layers.grid import num_positions


def default_channels(channels, num_heads):
    """Rounds `channels` up to a positive multiple of `num_heads`."""
    return max(1, math.ceil(channels / num_heads)) * num_heads


def resolved_widths(layer, channels):
    """`(output, key, value channels, attention scale)` of `layer` for `C`
    input channels: `F = filters or C`, keys `F // 8` and values `F // 2`
    unless given (rounded up to multiples of the heads), and the scale
    `1 / sqrt(key channels per head)` with `use_scale`, else `1.0`."""
    heads = layer.num_heads
    outputs = layer.filters or channels
    keys = layer.key_channels or default_channels(outputs // 8, heads)
    values = layer.value_channels or default_channels(outputs // 2, heads)
    scale = 1.0 / math.sqrt(keys // heads) if layer.use_scale else 1.0
    return outputs, keys, values, scale


def channel_axis(data_format):
    """The channel axis of inputs in `data_format`."""
    return -1 if data_format == "channels_last" else 1


def to_channels_first(tensor):
    """`(B, *spatial, C)` to `(B, C, *spatial)`, by a transpose whose axes
    are all non-negative: torch's TorchScript ONNX exporter writes
    `moveaxis(x, -1, 1)` as a Transpose of perm `{0, -1, 1, 2}`, a file
    ONNX Runtime will not load."""
    rank = len(tensor.shape)
    return ops.transpose(tensor, (0, rank - 1, *range(1, rank - 1)))


def spatial_shape(input_shape, data_format):
    """The spatial sizes of `input_shape` (a tuple; `None` if unknown)."""
    if data_format == "channels_last":
        return tuple(input_shape[1:-1])
    return tuple(input_shape[2:])


def check_input_shape(layer, input_shape):
    """Raises `ValueError` for an input shape `layer` cannot take."""
    input_shape = tuple(input_shape)
    name = type(layer).__name__
    if len(input_shape) != layer.rank + 2:
        raise ValueError(
            f"`{name}` expects inputs of rank {layer.rank + 2}: (batch, "
            f"{layer.rank} spatial axes, channels). "
            f"Received: input_shape={input_shape}"
        )
    if input_shape[layer.channel_axis] is None:
        raise ValueError(
            "The channel dimension of the inputs must be known. "
            f"Received: input_shape={input_shape}"
        )
    spatial = layer.spatial_shape(input_shape)
    if any(size is not None and size < 1 for size in spatial):
        raise ValueError(
            "Every spatial size of the inputs must be positive. "
            f"Received: input_shape={input_shape}"
        )
    if layer.pool_size is None:
        return
    for size, pool in zip(spatial, layer.pool_size, strict=True):
        if size is not None and pool > size:
            raise ValueError(
                "`pool_size` must not exceed the spatial size of the "
                f"inputs. Received: pool_size={layer.pool_size} for "
                f"input_shape={input_shape}"
            )


def check_input_dtype(layer, dtype):
    """Raises `TypeError` unless the inputs have a floating dtype."""
    # Backends disagree on integer inputs (TF fails deep in `call`, JAX and
    # torch silently promote), so refuse them up front everywhere.
    dtype = keras.backend.standardize_dtype(dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            f"`{type(layer).__name__}` expects floating-point inputs. "
            f"Received: inputs.dtype={dtype}"
        )


def output_shapes(layer, input_shape):
    """The output shape of `layer` for `input_shape`, and with
    `return_attention_scores` the scores' `(batch, heads, N, M)` too."""
    check_input_shape(layer, input_shape)
    input_shape = tuple(input_shape)
    output_shape = list(input_shape)
    output_shape[layer.channel_axis] = (
        layer.filters or input_shape[layer.channel_axis]
    )
    if not layer.return_attention_scores:
        return tuple(output_shape)
    spatial = layer.spatial_shape(input_shape)
    scores_shape = (
        input_shape[0],
        layer.num_heads,
        num_positions(spatial),
        num_positions(layer.key_value_spatial_shape(spatial)),
    )
    return tuple(output_shape), scores_shape


def output_spec(layer, inputs):
    """`compute_output_spec` of `layer`: the outputs in the compute dtype,
    with `return_attention_scores` also the float32 scores."""
    check_input_dtype(layer, inputs.dtype)
    shapes = layer.compute_output_shape(inputs.shape)
    if not layer.return_attention_scores:
        return keras.KerasTensor(shapes, dtype=layer.compute_dtype)
    output_shape, scores_shape = shapes
    return (
        keras.KerasTensor(output_shape, dtype=layer.compute_dtype),
        keras.KerasTensor(scores_shape, dtype="float32"),
    )


def split_heads(tensor, heads):
    """`(B, *spatial, h * d)` to `(B, positions, h, d)`.

    The batch stays explicit (never `-1`): a map of another size than a
    graph was exported for then fails to reshape instead of being cut into
    several "images" of the exported size. The number of positions stays
    static when the spatial sizes are known (the kernels choose by it).
    """
    positions = num_positions(tensor.shape[1:-1])
    return ops.reshape(
        tensor,
        (
            ops.shape(tensor)[0],
            -1 if positions is None else positions,
            heads,
            tensor.shape[-1] // heads,
        ),
    )


def merge_heads(context):
    """`(B, N, h, d)` to `(B, N, h * d)`, the batch explicit as above."""
    _, num_queries, heads, width = context.shape
    return ops.reshape(
        context,
        (
            ops.shape(context)[0],
            -1 if num_queries is None else num_queries,
            heads * width,
        ),
    )
