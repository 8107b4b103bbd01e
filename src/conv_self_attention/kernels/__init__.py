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

Each call is planned, then run: `plan_attention` finds the device
(`conv_self_attention.kernels.device`) and whether an exporter traces the
call, and `plan_kernel` (`conv_self_attention.kernels.plan`, pure) resolves
`auto`, the fused kernel's dtype and the chunked kernel's blocks into a
`KernelCall`; `run_attention` runs it. `attention` does both; the layers
keep the `KernelCall` of their latest call as `layer.last_kernel`.
"""

import keras

from conv_self_attention.kernels.auto import flash_eligible
from conv_self_attention.kernels.auto import select_implementation
from conv_self_attention.kernels.chunked import chunked_attention
from conv_self_attention.kernels.dense import dense_attention
from conv_self_attention.kernels.device import on_compute_device
from conv_self_attention.kernels.fused import fused_attention
from conv_self_attention.kernels.plan import IMPLEMENTATIONS
from conv_self_attention.kernels.plan import KernelCall
from conv_self_attention.kernels.plan import plan_attention
from conv_self_attention.kernels.plan import plan_kernel
from conv_self_attention.kernels.plan import validate_implementation

__all__ = [
    "IMPLEMENTATIONS",
    "KernelCall",
    "attention",
    "flash_eligible",
    "plan_attention",
    "plan_kernel",
    "run_attention",
    "select_implementation",
    "validate_implementation",
]



def run_attention(kernel_call, query, key, value, *, scale):
    """Runs the `KernelCall` from `plan_attention` on the inputs.

    Args:
        kernel_call: the `KernelCall` planned for these inputs.
        query: `(B, N, h, dk)` tensor.
        key: `(B, M, h, dk)` tensor.
        value: `(B, M, h, dv)` tensor.
        scale: python float multiplying the logits (1.0 for SAGAN).

    Returns:
        `(out, scores)`: `out` of shape `(B, N, h, dv)` in `value.dtype`;
        `scores` the `(B, h, N, M)` float32 softmax probabilities when
        `kernel_call.scores`, else `None`.

    Raises:
        ValueError: when the flash kernel rejects the inputs; the message
            names the kernel, device, dtype and reason.
    """
    scale = float(scale)
    query, key, value = on_compute_device(query, key, value)
    implementation = kernel_call.implementation
    if implementation == "dense":
        out, scores = dense_attention(query, key, value, scale)
        return out, scores if kernel_call.scores else None
    if implementation == "chunked":
        out = chunked_attention(
            query, key, value, scale, kernel_call.blocks,
            exporting=kernel_call.exporting,
        )
        return out, None
    platform = kernel_call.device.platform
    if not kernel_call.flash:
        out = fused_attention(
            query, key, value, scale, flash=False, platform=platform
        )
        return out, None
    try:
        out = fused_attention(
            query, key, value, scale, flash=True, platform=platform
        )
    except (RuntimeError, NotImplementedError, ValueError) as error:
        raise ValueError(_flash_rejection(kernel_call, value, error)) from error
    return out, None


def _flash_rejection(kernel_call, value, error):
    dtype = keras.backend.standardize_dtype(value.dtype)
    reason = " ".join(str(error).split()).rstrip(".")
    return (
        f"The flash attention kernel of the `fused` implementation "
        f"({keras.backend.backend()}) rejected the inputs on device "
        f"{kernel_call.device} in dtype {dtype}: "
        f"{reason or type(error).__name__}. Use "
        'attention_implementation="auto", or "chunked" where "auto" chose '
        "this kernel (a case its rule should not have allowed)."
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

    `run_attention(plan_attention(...), ...)` in one call; use those two to
    see which kernel runs.

    Args:
        query: `(B, N, h, dk)` tensor.
        key: `(B, M, h, dk)` tensor.
        value: `(B, M, h, dv)` tensor.
        scale: python float multiplying the logits (1.0 for SAGAN).
        implementation: `"auto"`, `"dense"`, `"chunked"` or `"fused"`.
        chunk_size: query positions per block for `"chunked"`; `None`
            sizes blocks for the device (`chunked.plan_blocks`).
        return_scores: also return the `(B, h, N, M)` float32 softmax
            probabilities. Forces the dense kernel.

    Returns:
        `out` of shape `(B, N, h, dv)` in `value.dtype`, or `(out, scores)`
        when `return_scores` is true.

    Example:

    ```python
    >>> from conv_self_attention import attention
    >>> rng = np.random.default_rng(0)
    >>> query = rng.normal(size=(2, 16, 1, 8)).astype("float32")  # N = 16
    >>> key = rng.normal(size=(2, 4, 1, 8)).astype("float32")     # M = 4
    >>> value = rng.normal(size=(2, 4, 1, 32)).astype("float32")
    >>> out, scores = attention(
    ...     query, key, value, scale=1.0, return_scores=True
    ... )
    >>> tuple(out.shape), tuple(scores.shape)
    ((2, 16, 1, 32), (2, 1, 16, 4))
    >>> bool(np.allclose(keras.ops.sum(scores, axis=-1), 1.0, atol=1e-6))
    True
    ```
    """
    kernel_call = plan_attention(
        query,
        key,
        value,
        implementation=implementation,
        chunk_size=chunk_size,
        return_scores=return_scores,
    )
    out, scores = run_attention(kernel_call, query, key, value, scale=scale)
    return (out, scores) if return_scores else out
