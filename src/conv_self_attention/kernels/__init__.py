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
(`conv_self_attention.kernels.device`), resolves `auto`, the fused
kernel's dtype and the chunked kernel's blocks into a `KernelCall`, and
`run_attention` runs it. `attention` does both; the layers keep the
`KernelCall` of their latest call as `layer.last_kernel`.
"""

import typing

import keras

from conv_self_attention.checks import is_int
from conv_self_attention.checks import positive_int
from conv_self_attention.kernels.auto import flash_eligible
from conv_self_attention.kernels.auto import select_implementation
from conv_self_attention.kernels.chunked import BlockPlan
from conv_self_attention.kernels.chunked import chunked_attention
from conv_self_attention.kernels.chunked import plan_blocks
from conv_self_attention.kernels.dense import dense_attention
from conv_self_attention.kernels.device import Device
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


class KernelCall(typing.NamedTuple):
    """Which kernel an attention call runs, and how.

    `layer.last_kernel` holds the one of a layer's latest call;
    `plan_attention` returns it without running the call.

    Attributes:
        implementation: the concrete kernel, `"dense"`, `"chunked"` or
            `"fused"` (never `"auto"`).
        chunk_size: query positions per block of the chunked kernel (a
            Python int), `None` for the other kernels.
        per_image: whether the chunked kernel's blocks hold one image at a
            time (`chunked.plan_blocks`); `False` for the other kernels.
        flash: whether `fused` feeds q, k and v in the compute dtype to a
            flash kernel (`auto.flash_eligible`); `False` otherwise.
        device: the `device.Device` the computation runs on.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> layer = SelfAttention2D(attention_implementation="chunked")
    >>> _ = layer(np.zeros((1, 8, 8, 16), "float32"))
    >>> layer.last_kernel.implementation, layer.last_kernel.per_image
    ('chunked', False)
    ```
    """

    implementation: str
    chunk_size: int | None
    per_image: bool
    flash: bool
    device: Device


def plan_attention(
    query,
    key,
    value,
    *,
    implementation="auto",
    chunk_size=None,
    return_scores=False,
):
    """The `KernelCall` that `attention(...)` runs for these inputs.

    Reads only the inputs' static shapes and dtypes and the device, so it
    works on traced tensors (a traced call records what was traced).

    Args:
        query: tensor, `(B, N, h, dk)` tensor.
        key: tensor, `(B, M, h, dk)` tensor.
        value: tensor, `(B, M, h, dv)` tensor.
        implementation: str, `"auto"`, `"dense"`, `"chunked"` or `"fused"`.
        chunk_size: int or None, query positions per block for `"chunked"`, or
            `None`.
        return_scores: bool, whether the scores are asked for (forces `dense`).

    Returns:
        A `KernelCall`.

    Raises:
        ValueError: for an unknown `implementation` or a `chunk_size` that
            is not `None` or a positive int.
    """
    validate_implementation(implementation)
    chunk_size = positive_int("chunk_size", chunk_size, allow_none=True)
    device = find_device(query)
    inputs = _describe_inputs(query, key, value, device)
    if return_scores:
        implementation = "dense"
    elif implementation == "auto":
        implementation = select_implementation(**inputs)
    if implementation == "chunked":
        batch, num_queries, heads, _ = query.shape
        plan = plan_blocks(
            num_queries, key.shape[1], batch, heads, device.platform,
            chunk_size,
        )
        return KernelCall("chunked", *plan, False, device)
    flash = implementation == "fused" and flash_eligible(
        **{name: inputs[name] for name in _ELIGIBILITY_ARGUMENTS}
    )
    return KernelCall(implementation, None, False, flash, device)


def run_attention(
    kernel_call, query, key, value, *, scale, return_scores=False
):
    """Runs the `KernelCall` from `plan_attention` on the inputs.

    Args:
        kernel_call: KernelCall, the `KernelCall` planned for these inputs.
        query: tensor, `(B, N, h, dk)` tensor.
        key: tensor, `(B, M, h, dk)` tensor.
        value: tensor, `(B, M, h, dv)` tensor.
        scale: float, python float multiplying the logits (1.0 for SAGAN).
        return_scores: bool, also return the `(B, h, N, M)` float32 softmax
            probabilities (needs a `dense` call).

    Returns:
        `out` of shape `(B, N, h, dv)` in `value.dtype`, or `(out, scores)`
        when `return_scores` is true.

    Raises:
        ValueError: when the flash kernel rejects the inputs; the message
            names the kernel, device, dtype and reason.
    """
    scale = float(scale)
    query, key, value = _on_compute_device(query, key, value)
    implementation = kernel_call.implementation
    if implementation == "dense":
        out, scores = dense_attention(query, key, value, scale)
        return (out, scores) if return_scores else out
    if return_scores:
        raise ValueError(
            "Attention scores need the dense kernel. Received: "
            f"kernel_call={kernel_call}"
        )
    if implementation == "chunked":
        plan = BlockPlan(kernel_call.chunk_size, kernel_call.per_image)
        return chunked_attention(query, key, value, scale, plan)
    platform = kernel_call.device.platform
    if not kernel_call.flash:
        return fused_attention(query, key, value, scale, False, platform)
    try:
        return fused_attention(query, key, value, scale, True, platform)
    except (RuntimeError, NotImplementedError, ValueError) as error:
        raise ValueError(_flash_rejection(kernel_call, value, error)) from error


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
        query: tensor, `(B, N, h, dk)` tensor.
        key: tensor, `(B, M, h, dk)` tensor.
        value: tensor, `(B, M, h, dv)` tensor.
        scale: float, python float multiplying the logits (1.0 for SAGAN).
        implementation: str, `"auto"`, `"dense"`, `"chunked"` or `"fused"`.
        chunk_size: int or None, query positions per block for `"chunked"`;
            `None` sizes blocks for the device (`chunked.plan_blocks`).
        return_scores: bool, also return the `(B, h, N, M)` float32 softmax
            probabilities. Forces the dense kernel.

    Returns:
        `out` of shape `(B, N, h, dv)` in `value.dtype`, or `(out, scores)`
        when `return_scores` is true.

    Example:

    ```python
    >>> import keras
    >>> import numpy as np
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
    return run_attention(
        kernel_call, query, key, value, scale=scale,
        return_scores=return_scores,
    )


_ELIGIBILITY_ARGUMENTS = (
    "backend",
    "platform",
    "compute_capability",
    "dtype",
    "key_width",
    "value_width",
)


def _on_compute_device(*tensors):
    """The inputs as tensors where Keras computes on them. torch's Keras
    ops move a tensor from another device to Keras' (`device.find_device`)
    but `ops.cast` to its own dtype does not, and the torch kernels call
    torch directly: without this, a CPU input beside a GPU one reaches
    SDPA. A no-op for tensors already there (and for traced ones)."""
    return tuple(keras.ops.convert_to_tensor(tensor) for tensor in tensors)


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
        "batch_heads": batch * heads if is_int(batch) else None,
        "key_width": key_width,
        "value_width": value.shape[-1],
    }
