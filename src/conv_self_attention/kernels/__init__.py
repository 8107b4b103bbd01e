"""Exact attention kernels behind one entry point, `attention(...)`.

Layout follows `keras.ops.dot_product_attention`: query `(B, N, h, dk)`,
key `(B, M, h, dk)`, value `(B, M, h, dv)`. The kernels know nothing of
layers.

Implementations, all exact (equal to the dense softmax to float tolerance):

- `dense`: materialises the `(B, h, N, M)` scores; the only one that can
  return them.
- `chunked`: blocks of `chunk_size` queries, recomputed in the backward
  pass; peak memory O(chunk_size x M) in both passes.
- `fused`: the backend's fused attention with q, k and v zero-padded to
  one width (exact) and an explicit scale; in the compute dtype where a
  flash kernel is eligible (torch and JAX on NVIDIA GPUs of compute
  capability 8.0+ under float16/bfloat16), in float32 elsewhere. See
  `conv_self_attention.kernels.fused`.
- `auto`: see `conv_self_attention.kernels.auto`.

The device is found once per call (`conv_self_attention.kernels.device`)
and steers `auto`, the fused kernel's dtype and the default chunk size.
"""

import keras

from conv_self_attention.kernels.auto import flash_eligible
from conv_self_attention.kernels.auto import select_implementation
from conv_self_attention.kernels.chunked import chunked_attention
from conv_self_attention.kernels.dense import dense_attention
from conv_self_attention.kernels.device import find_device
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
            picks a default sized for the device (a CPU cache, or a GPU's
            memory: `chunked.default_chunk_size`).
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
    device = find_device(query)
    inputs = _describe_inputs(query, key, value, device)
    if implementation == "auto":
        implementation = select_implementation(**inputs)
    if implementation == "dense":
        return dense_attention(query, key, value, scale)[0]
    if implementation == "fused":
        in_compute_dtype = flash_eligible(
            **{name: inputs[name] for name in _ELIGIBILITY_ARGUMENTS}
        )
        return fused_attention(
            query, key, value, scale, in_compute_dtype, device.platform
        )
    return chunked_attention(
        query, key, value, scale, chunk_size, device.platform
    )


_ELIGIBILITY_ARGUMENTS = (
    "backend",
    "platform",
    "compute_capability",
    "dtype",
    "key_width",
    "value_width",
)


def _describe_inputs(query, key, value, device):
    """The plain values that `select_implementation` decides on."""
    batch, num_queries, heads, key_width = query.shape
    dtype = keras.backend.result_type(query.dtype, key.dtype, value.dtype)
    return {
        "backend": keras.backend.backend(),
        "platform": device.platform,
        "compute_capability": device.compute_capability,
        "dtype": dtype,
        "num_queries": num_queries,
        "num_keys": key.shape[1],
        "batch_heads": None if batch is None else batch * heads,
        "key_width": key_width,
        "value_width": value.shape[-1],
    }
