"""The chunked kernel: exact attention over blocks of queries.

Each block of `chunk_size` queries sees every key, so the softmax of a
block needs no running rescaling; only the block's (chunk_size x M) logits
exist at a time. The backward pass recomputes them per block from the saved
row log-sum-exp (handwritten, see the backend modules), so peak memory is
O(chunk_size x M) in both passes rather than O(N x M).

Backend code lives in `_chunked_<backend>.py` and is imported only when
that backend is active.
"""

import importlib

import keras
from keras import ops

# Logit elements per block, over the whole batch and all heads, that the
# default chunk size aims at, per device platform.
# CPU: 2**21 float32 (8 MiB). Measured on 2 CPU cores (batch 4, 64x64 and
# 128x128 maps, fwd+bwd; `benchmarks/kernel_thresholds.py`), blocks whose
# logits stay near the cache size run 2-3x faster than blocks of
# 2**23-2**24 elements, and much smaller blocks lose to per-block overhead.
# GPU (and other accelerators, unmeasured): 2**27 (512 MiB). Measured on
# an H200 (JAX, whole layer fwd+bwd): 1024 queries per block at 128x128
# batch 8 (2**27 logits) matched the naive block (30.9 vs 30.8 ms; 32
# queries: 51 ms), and at 256x256 batch 2 (also 2**27) the working set
# was 1.6 GiB, against 6.1 GiB with 4096 queries (2**29).
CPU_BLOCK_ELEMENTS = 2**21
ACCELERATOR_BLOCK_ELEMENTS = 2**27
# Batch x heads assumed when the batch size is unknown at trace time.
ASSUMED_BATCH_HEADS = 4
# Default chunk bounds: (smallest, chunk when M is unknown, largest).
CPU_CHUNK_RANGE = (32, 256, 4096)
ACCELERATOR_CHUNK_RANGE = (64, 1024, 16384)

_BACKEND_MODULES = {
    "tensorflow": "conv_self_attention.kernels._chunked_tensorflow",
    "jax": "conv_self_attention.kernels._chunked_jax",
    "torch": "conv_self_attention.kernels._chunked_torch",
}


def default_chunk_size(num_keys, batch_heads=None, platform="cpu"):
    """Query positions per block for `num_keys` keys and `batch_heads`
    images x heads (either may be `None`: unknown at trace time) on a
    device of this platform (`"cpu"`, `"gpu"`, ...)."""
    if platform == "cpu":
        block_elements = CPU_BLOCK_ELEMENTS
        smallest, unknown, largest = CPU_CHUNK_RANGE
    else:
        block_elements = ACCELERATOR_BLOCK_ELEMENTS
        smallest, unknown, largest = ACCELERATOR_CHUNK_RANGE
    if num_keys is None:
        return unknown
    batch_heads = batch_heads or ASSUMED_BATCH_HEADS
    chunk_size = block_elements // (batch_heads * max(num_keys, 1))
    # A multiple of 32 keeps the matmul tiles whole.
    chunk_size = chunk_size // 32 * 32
    return min(max(chunk_size, smallest), largest)


def chunked_attention(
    query, key, value, scale, chunk_size=None, platform="cpu"
):
    """`(B, N, h, dk)`, `(B, M, h, dk)`, `(B, M, h, dv)` to `(B, N, h, dv)`
    in `value.dtype`, computed in float32. `chunk_size=None` picks the
    default for the device `platform`."""
    if chunk_size is None:
        batch, heads = query.shape[0], query.shape[2]
        chunk_size = default_chunk_size(
            key.shape[1], None if batch is None else batch * heads, platform
        )
    if query.shape[1] is not None:
        # A block larger than N would only pad N with wasted rows.
        chunk_size = max(1, min(chunk_size, query.shape[1]))
    module_name = _BACKEND_MODULES.get(keras.backend.backend())
    # (B, N, h, d) -> (B, h, N, d): blocks then slice a contiguous axis.
    query, key, float_value = (
        ops.transpose(ops.cast(tensor, "float32"), (0, 2, 1, 3))
        for tensor in (query, key, value)
    )
    if module_name is None:
        out = _chunked_attention_ops(query, key, float_value, scale, chunk_size)
    else:
        backend_kernel = importlib.import_module(module_name)
        out = backend_kernel.chunked_attention(
            query, key, float_value, scale, chunk_size
        )
    return ops.cast(ops.transpose(out, (0, 2, 1, 3)), value.dtype)


def _chunked_attention_ops(query, key, value, scale, chunk_size):
    """Forward-only fallback for other backends (no autodiff to bound)."""
    blocks = []
    for start in range(0, query.shape[2], chunk_size):
        logits = ops.einsum(
            "bhnd,bhmd->bhnm", query[:, :, start : start + chunk_size], key
        )
        probs = ops.softmax(logits * scale, axis=-1)
        blocks.append(ops.einsum("bhnm,bhmd->bhnd", probs, value))
    return ops.concatenate(blocks, axis=2)
