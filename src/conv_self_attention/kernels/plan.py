"""Planning an attention call: the one place that decides what runs.

`plan_kernel` is a pure function of plain values (backend, device, dtype,
sizes, widths, what was asked): which kernel, whether scores are returned,
whether the fused kernel runs a flash kernel in the compute dtype, the
chunked kernel's blocks, and whether the call is traced for an export.
`plan_attention` reads those values off the tensors and the device and
calls it. The kernels follow the `KernelCall` they are given.
"""

import typing

import keras

from conv_self_attention.checks import is_int
from conv_self_attention.checks import one_of
from conv_self_attention.checks import positive_int
from conv_self_attention.kernels.auto import flash_eligible
from conv_self_attention.kernels.auto import select_implementation
from conv_self_attention.kernels.chunked import BlockPlan
from conv_self_attention.kernels.chunked import plan_blocks
from conv_self_attention.kernels.device import Device
from conv_self_attention.kernels.device import find_device
from conv_self_attention.kernels.device import is_exporting
from conv_self_attention.kernels.device import static_size

IMPLEMENTATIONS = ("auto", "dense", "chunked", "fused")
"""The kernel names `attention_implementation` accepts."""


def validate_implementation(implementation):
    """Checks a kernel name.

    Args:
        implementation: str, one of `IMPLEMENTATIONS`.

    Raises:
        ValueError: if `implementation` is not a known kernel name.
    """
    one_of("attention_implementation", implementation, IMPLEMENTATIONS)


class KernelCall(typing.NamedTuple):
    """Which kernel an attention call runs, and how.

    `layer.last_kernel` holds the one of a layer's latest call;
    `plan_attention` returns it without running the call.

    Attributes:
        implementation: the concrete kernel, `"dense"`, `"chunked"` or
            `"fused"` (never `"auto"`).
        blocks: the chunked kernel's `chunked.BlockPlan` (query positions
            per block, and whether a block holds one image), `None` for
            the other kernels.
        flash: whether `fused` feeds q, k and v in the compute dtype to a
            flash kernel (`auto.flash_eligible`); `False` otherwise.
        scores: whether the call returns the attention scores (then the
            kernel is `"dense"`).
        exporting: whether the call is traced for an exporter (torch's
            `torch.export` and ONNX exporters, and JAX's within
            `export_model`: the chunked kernel's blocks then span the whole
            batch, see `chunked.plan_blocks`, and on JAX are unrolled).
        device: the `device.Device` the computation runs on.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> layer = SelfAttention2D(attention_implementation="chunked")
    >>> _ = layer(np.zeros((1, 8, 8, 16), "float32"))
    >>> layer.last_kernel.implementation, layer.last_kernel.chunk_size
    ('chunked', 64)
    ```
    """

    implementation: str
    blocks: BlockPlan | None
    flash: bool
    scores: bool
    exporting: bool
    device: Device

    @property
    def chunk_size(self):
        """`blocks.chunk_size`, or `None` without blocks."""
        return None if self.blocks is None else self.blocks.chunk_size

    @property
    def per_image(self):
        """`blocks.per_image`, or `False` without blocks."""
        return False if self.blocks is None else self.blocks.per_image


def plan_kernel(
    *,
    backend,
    device,
    dtype,
    num_queries,
    num_keys,
    batch,
    heads,
    key_width,
    value_width,
    implementation="auto",
    chunk_size=None,
    return_scores=False,
    exporting=False,
):
    """The `KernelCall` for a call described by plain values (pure).

    Args:
        backend: str, `"tensorflow"`, `"jax"` or `"torch"`.
        device: Device, the `device.Device` that computes.
        dtype: str, the compute dtype of q, k, v, as a string.
        num_queries: int or None, N, or `None` when unknown at trace time.
        num_keys: int or None, M, or `None` when unknown at trace time.
        batch: int or tensor or None, the batch size, or `None` (or a symbolic
            size) when unknown.
        heads: int, the number of heads.
        key_width: int, per-head width of q and k.
        value_width: int, per-head width of v.
        implementation: str, `"auto"`, `"dense"`, `"chunked"` or `"fused"`.
        chunk_size: int or None, query positions per block for `"chunked"`, or
            `None`.
        return_scores: bool, whether the scores are asked for; only `"dense"`
            has them, so it overrides `implementation`.
        exporting: bool, whether the call is traced for an exporter.

    Returns:
        A `KernelCall`.
    """
    validate_implementation(implementation)
    chunk_size = positive_int("chunk_size", chunk_size, allow_none=True)
    eligibility = {
        "backend": backend,
        "platform": device.platform,
        "compute_capability": device.compute_capability,
        "dtype": dtype,
        "key_width": key_width,
        "value_width": value_width,
    }
    if return_scores:
        implementation = "dense"
    elif implementation == "auto":
        implementation = select_implementation(
            **eligibility,
            num_queries=num_queries,
            num_keys=num_keys,
            batch_heads=batch * heads if is_int(batch) else None,
        )
    blocks = None
    if implementation == "chunked":
        blocks = plan_blocks(
            num_queries, num_keys, batch, heads, device.platform, chunk_size,
            exporting=exporting,
        )
    flash = implementation == "fused" and flash_eligible(**eligibility)
    return KernelCall(
        implementation, blocks, flash, bool(return_scores), bool(exporting),
        device,
    )


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

    Reads only the inputs' static shapes and dtypes, the device and
    whether an exporter traces the call, so it works on traced tensors (a
    traced call records what was traced).

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
    batch, num_queries, heads, key_width = query.shape
    # Ints where torch's TorchScript tracer gives tensors (the batch stays
    # as the tracer has it: the export leaves it open).
    return plan_kernel(
        backend=keras.backend.backend(),
        device=find_device(query),
        dtype=keras.backend.result_type(query.dtype, key.dtype, value.dtype),
        num_queries=static_size(num_queries),
        num_keys=static_size(key.shape[1]),
        batch=batch,
        heads=static_size(heads),
        key_width=static_size(key_width),
        value_width=static_size(value.shape[-1]),
        implementation=implementation,
        chunk_size=chunk_size,
        return_scores=return_scores,
        exporting=is_exporting(),
    )
