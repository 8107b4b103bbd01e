"""The fused kernel for JAX.

The compute-dtype path calls `jax.nn.dot_product_attention` with an
explicit implementation: `keras.ops.dot_product_attention`, even with
`flash_attention=True`, logs and falls back to XLA's dense attention when
cuDNN fails on the inputs, and that fallback materialises N x M.
"""

import jax
from keras import ops


def fused_attention(query, key, value, scale, *, flash, platform):
    """`(B, N, h, d)` inputs of one width and dtype to `(B, N, h, d)`."""
    if not flash:
        # float32: XLA's attention (cuDNN takes only float16/bfloat16).
        return ops.dot_product_attention(query, key, value, scale=scale)
    implementation = "cudnn" if platform == "gpu" else "xla"
    return jax.nn.dot_product_attention(
        query, key, value, scale=scale, implementation=implementation
    )
