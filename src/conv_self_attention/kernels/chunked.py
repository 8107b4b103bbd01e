"""The chunked kernel: exact attention over blocks of queries.

Each block of `chunk_size` queries sees every key, so the softmax of a
block needs no running rescaling; only the block's (chunk_size x M) logits
exist at a time. The backward pass recomputes them per block from the saved
row log-sum-exp (handwritten, see the backend modules), so peak memory is
O(chunk_size x M) in both passes rather than O(N x M).

Backend code lives in `_chunked_<backend>.py` and is imported only when
that backend is active.
"""

import collections
import importlib

import keras
from keras import ops

from conv_self_attention.checks import is_int

# Logit elements per block, over the whole batch and all heads, that the
# default chunk size aims at, per device platform. Measured figures name
# their results file in benchmarks/results/ and key (a test checks them).
# CPU: 2**21 float32. On a shared 2-core CPU (release 0.1.0; batch 4,
# 64x64 and 128x128 maps, fwd+bwd; `benchmarks/cpu/kernel_thresholds.py`),
# blocks whose logits stay near the cache size ran
# 2x [from cpu_thresholds_0.1 block_speedup/low] to
# 3x [from cpu_thresholds_0.1 block_speedup/high] faster than blocks of
# 2**23-2**24 elements, and much smaller blocks lose to per-block overhead.
# GPU (and other accelerators, unmeasured): 2**27. Measured on an H200
# (release 0.1.x; JAX, whole layer fwd+bwd): 1024 queries per block at
# 128x128 batch 8 (2**27 logits) matched the naive block
# (30.9 ms [from gpu_h200_0.1 jax/float32/128x8/chunked@1024/ms] against
# 30.8 ms [from gpu_h200_0.1 jax/float32/128x8/naive/ms]; 32 queries:
# 50.9 ms [from gpu_h200_0.1 jax/float32/128x8/chunked/ms]), and at
# 256x256 batch 2 (also 2**27) the working set was
# 1.61 GiB [from gpu_h200_0.1 jax/float32/256x2/chunked@1024/gib], against
# 6.11 GiB [from gpu_h200_0.1 jax/float32/256x2/chunked@4096/gib] with
# 4096 queries (2**29).
CPU_BLOCK_ELEMENTS = 2**21
ACCELERATOR_BLOCK_ELEMENTS = 2**27
# Default chunk bounds: (smallest block over the whole batch, chunk when M
# is unknown, largest).
CPU_CHUNK_RANGE = (32, 256, 4096)
ACCELERATOR_CHUNK_RANGE = (64, 1024, 16384)
# Chunk sizes are rounded down to a multiple of this (whole matmul tiles).
CHUNK_MULTIPLE = 32

BlockPlan = collections.namedtuple("BlockPlan", ["chunk_size", "per_image"])
"""The chunked kernel's blocks for a call (a named tuple; `plan_blocks`).

Attributes:
    chunk_size: int, query positions per block.
    per_image: bool, whether a block holds the queries of one image at
        a time rather than of every image (when a whole-batch block would
        exceed the budget, or the batch is unknown at trace time).
"""

_BACKEND_MODULES = {
    "tensorflow": "conv_self_attention.kernels._chunked_tensorflow",
    "jax": "conv_self_attention.kernels._chunked_jax",
    "torch": "conv_self_attention.kernels._chunked_torch",
}


def block_elements(platform):
    """Logits per block that the default chunk size keeps within.

    Args:
        platform: str, the device platform, `"cpu"` or another (`"gpu"`,
            `"rocm"`, `"tpu"`, ...), as in `device.Device.platform`.

    Returns:
        `2**21` on a CPU (cache-sized), `2**27` on any other device.

    Example:

    ```python
    >>> from conv_self_attention.kernels.chunked import block_elements
    >>> block_elements("cpu") == 2**21, block_elements("gpu") == 2**27
    (True, True)
    ```
    """
    if platform == "cpu":
        return CPU_BLOCK_ELEMENTS
    return ACCELERATOR_BLOCK_ELEMENTS


def plan_blocks(
    num_queries, num_keys, batch, heads, platform, chunk_size=None, *,
    exporting=False,
):
    """How the chunked kernel splits the work, as a pure function.

    A block holds `chunk_size` queries of every image (`per_image=False`)
    or of one image at a time (`per_image=True`); its float32 logits are
    `chunk_size x M x heads`, times the batch when not per image.
    Without an explicit `chunk_size` they stay within
    `block_elements(platform)` for every batch: whole-batch blocks while
    at least the range's smallest chunk fits, else one image at a time
    (down to one query per block). The batch is unknown at trace time
    (`None`, or a symbolic size) under `tf.function` with a relaxed batch
    or JAX shape polymorphism: then blocks are always per image, so the
    planned size holds for any runtime batch.

    An explicit `chunk_size` is honoured as given, even past the budget;
    it is only clipped to N. The bound needs M; when M is unknown, the
    chunk is the range's middle value.

    Traced for an exporter (`exporting`: torch's exporters, and JAX's
    within `export_model`; `device.is_exporting`)
    blocks always span the whole batch (`per_image=False`): a loop over the
    images would fix the batch of the exported program. Their size is
    planned as above, so a block of an exported program holds the planned
    logits times the runtime batch when the batch was unknown.

    Args:
        num_queries: int or None, N, or `None` when unknown at trace time.
        num_keys: int or None, M, or `None` when unknown at trace time.
        batch: int or tensor or None, the batch size, or `None`/symbolic when
            unknown.
        heads: int, the number of heads.
        platform: str, the device platform (`"cpu"`, `"gpu"`, ...).
        chunk_size: int or None, the layer's `chunk_size`, or `None` for the
            default.
        exporting: bool, whether an exporter traces the call.

    Returns:
        A `BlockPlan(chunk_size, per_image)`; `chunk_size` a Python int.
    """
    batch_known = is_int(batch)
    if chunk_size is None:
        chunk_size, per_image = _default_blocks(
            num_queries, num_keys, batch if batch_known else None, heads,
            platform,
        )
    else:
        per_image = not batch_known
    if is_int(num_queries):
        # A block larger than N would only pad N with wasted rows.
        chunk_size = max(1, min(chunk_size, num_queries))
    return BlockPlan(int(chunk_size), per_image and not exporting)


def _default_blocks(num_queries, num_keys, batch, heads, platform):
    smallest, unknown, largest = (
        CPU_CHUNK_RANGE if platform == "cpu" else ACCELERATOR_CHUNK_RANGE
    )
    if not is_int(num_keys):
        return unknown, batch is None
    if is_int(num_queries):
        smallest = min(smallest, num_queries)
    budget = block_elements(platform)
    if batch is not None:
        chunk_size = _round_chunk(budget // (batch * heads * max(num_keys, 1)))
        if chunk_size >= smallest:
            return min(chunk_size, largest), False
    chunk_size = _round_chunk(budget // (heads * max(num_keys, 1)))
    return min(max(chunk_size, 1), largest), True


def _round_chunk(chunk_size):
    if chunk_size < CHUNK_MULTIPLE:
        return chunk_size
    return chunk_size // CHUNK_MULTIPLE * CHUNK_MULTIPLE


def chunked_attention(query, key, value, scale, plan, *, exporting=False):
    """`(B, N, h, dk)`, `(B, M, h, dk)`, `(B, M, h, dv)` to `(B, N, h, dv)`
    in `value.dtype`, computed in float32 in the blocks of `plan` (a
    `BlockPlan`, see `plan_blocks`); `exporting` as planned."""
    backend_kernel = importlib.import_module(
        _BACKEND_MODULES[keras.backend.backend()]
    )
    # (B, N, h, d) -> (B, h, N, d): blocks then slice a contiguous axis.
    query, key, float_value = (
        ops.transpose(ops.cast(tensor, "float32"), (0, 2, 1, 3))
        for tensor in (query, key, value)
    )
    out = backend_kernel.chunked_attention(
        query, key, float_value, scale, plan, exporting=exporting
    )
    return ops.cast(ops.transpose(out, (0, 2, 1, 3)), value.dtype)
