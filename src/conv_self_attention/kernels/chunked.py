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

# Logit elements per block and head-image that the default chunk size aims
# at (2**22 float32 = 16 MiB): measured on 2 CPU cores, blocks of this size
# amortise the per-block overhead while staying cache- and memory-friendly.
DEFAULT_BLOCK_ELEMENTS = 2**22
MIN_CHUNK_SIZE = 64
MAX_CHUNK_SIZE = 4096

_BACKEND_MODULES = {
    "tensorflow": "conv_self_attention.kernels._chunked_tensorflow",
    "jax": "conv_self_attention.kernels._chunked_jax",
    "torch": "conv_self_attention.kernels._chunked_torch",
}


def default_chunk_size(num_keys):
    """Query positions per block for `num_keys` keys (`None`: unknown)."""
    if num_keys is None:
        return 1024
    chunk_size = DEFAULT_BLOCK_ELEMENTS // max(int(num_keys), 1)
    # A multiple of 64 keeps the matmul tiles whole.
    chunk_size = chunk_size // 64 * 64
    return min(max(chunk_size, MIN_CHUNK_SIZE), MAX_CHUNK_SIZE)


def chunked_attention(query, key, value, scale, chunk_size=None):
    """`(B, N, h, dk)`, `(B, M, h, dk)`, `(B, M, h, dv)` to `(B, N, h, dv)`
    in `value.dtype`, computed in float32."""
    if chunk_size is None:
        chunk_size = default_chunk_size(key.shape[1])
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
