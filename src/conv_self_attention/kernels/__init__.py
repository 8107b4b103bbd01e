"""Exact attention kernels behind one entry point, `attention(...)`.

Layout follows `keras.ops.dot_product_attention`: query `(B, N, h, dk)`,
key `(B, M, h, dk)`, value `(B, M, h, dv)`. The kernels know nothing of
layers.

Implementations, all exact (equal to the dense softmax to float tolerance):

- `dense`: materialises the `(B, h, N, M)` scores; the only one that can
  return them.
- `chunked`: blocks of `chunk_size` queries, recomputed in the backward
  pass; peak memory O(chunk_size x M) in both passes.
- `fused`: the backend's `dot_product_attention` with q and k zero-padded
  to the value width (exact) and an explicit scale.
- `auto`: see `conv_self_attention.kernels.auto`.
"""

from conv_self_attention.kernels.auto import select_implementation
from conv_self_attention.kernels.chunked import chunked_attention
from conv_self_attention.kernels.dense import dense_attention
from conv_self_attention.kernels.fused import fused_attention

IMPLEMENTATIONS = ("auto", "dense", "chunked", "fused")


def validate_implementation(implementation):
    """Raises `ValueError` unless `implementation` is a known kernel name."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            "Invalid value for argument `attention_implementation`. Expected "
            f"one of {IMPLEMENTATIONS}. Received: "
            f"attention_implementation={implementation!r}"
        )


def validate_chunk_size(chunk_size):
    """Raises `ValueError` unless `chunk_size` is `None` or a positive int."""
    if chunk_size is not None and (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or chunk_size < 1
    ):
        raise ValueError(
            "Invalid value for argument `chunk_size`. Expected `None` or a "
            f"positive int. Received: chunk_size={chunk_size!r}"
        )


def attention(
    query,
    key,
    value,
    *,
    scale,
    implementation="auto",
    chunk_size=None,
    return_scores=False,
):
    """Softmax attention `softmax(q k^T * scale) v`, exact in every kernel.

    Args:
        query: `(B, N, h, dk)` tensor.
        key: `(B, M, h, dk)` tensor.
        value: `(B, M, h, dv)` tensor.
        scale: python float multiplying the logits (1.0 for SAGAN).
        implementation: `"auto"`, `"dense"`, `"chunked"` or `"fused"`.
        chunk_size: query positions per block for `"chunked"`; `None`
            picks a default.
        return_scores: also return the `(B, h, N, M)` float32 softmax
            probabilities. Forces the dense kernel.

    Returns:
        `out` of shape `(B, N, h, dv)` in `value.dtype`, or `(out, scores)`
        when `return_scores` is true.
    """
    validate_implementation(implementation)
    validate_chunk_size(chunk_size)
    scale = float(scale)
    if return_scores or implementation == "dense":
        out, scores = dense_attention(query, key, value, scale)
        return (out, scores) if return_scores else out
    if implementation == "auto":
        implementation = select_implementation(query, key)
    if implementation == "dense":
        return dense_attention(query, key, value, scale)[0]
    if implementation == "fused":
        return fused_attention(query, key, value, scale)
    return chunked_attention(query, key, value, scale, chunk_size)
