"""Arithmetic every benchmark report shares: units, ratios, FLOPs."""

GIB = 2**30


def ratio(value, base):
    """`value / base`, or None when either is missing."""
    if value is None or not base:
        return None
    return value / base


def attention_flops(size, batch, channels, backward):
    """FLOPs of the layer at the minimum (no recomputation) on a square
    `size` map: the two attention matmuls and the four 1x1 projections
    (q/k `channels // 8`, v `channels // 2` wide); the backward pass
    costs two more of each."""
    positions = size * size
    key_width, value_width = channels // 8, channels // 2
    attention = 2 * batch * positions**2 * (key_width + value_width)
    projections = 2 * batch * positions * channels * 2 * (
        key_width + value_width
    )
    return (attention + projections) * (3 if backward else 1)
