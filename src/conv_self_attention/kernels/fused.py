"""The fused kernel: the backend's `dot_product_attention` made exact for
SAGAN's unequal widths.

`keras.ops.dot_product_attention` (torch's `scaled_dot_product_attention`
underneath) wants query, key and value of one width; with unequal widths
torch falls back to its math path, which materialises every N x M matrix.
Zero channels add nothing to q·k, so padding query and key (or value) up to
the common width keeps the result exact, and the explicit scale keeps the
logits those of the unpadded heads.
"""

from keras import ops


def _pad_last_axis(tensor, width):
    extra = width - tensor.shape[-1]
    if extra == 0:
        return tensor
    return ops.pad(tensor, [[0, 0], [0, 0], [0, 0], [0, extra]])


def fused_attention(query, key, value, scale):
    """`(B, N, h, dk)`, `(B, M, h, dk)`, `(B, M, h, dv)` to `(B, N, h, dv)`
    in `value.dtype`; computed in float32 like the other kernels."""
    value_width = value.shape[-1]
    width = max(query.shape[-1], value_width)
    query = _pad_last_axis(ops.cast(query, "float32"), width)
    key = _pad_last_axis(ops.cast(key, "float32"), width)
    padded_value = _pad_last_axis(ops.cast(value, "float32"), width)
    out = ops.dot_product_attention(query, key, padded_value, scale=scale)
    return ops.cast(out[..., :value_width], value.dtype)
