"""The fused kernel for torch: SDPA with its math path excluded.

SDPA silently falls back to its math path (every N x M matrix in memory)
when no fused kernel takes the inputs; excluding it turns that fallback
into an error.
"""

import torch
from torch.nn.attention import SDPBackend
from torch.nn.attention import sdpa_kernel

_FUSED_BACKENDS = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
]


def fused_attention(query, key, value, scale, *, flash, platform):
    """`(B, N, h, d)` inputs of one width and dtype to `(B, N, h, d)`.

    `flash` and `platform` need no handling here: SDPA takes whatever
    dtype it is given and picks its kernel by the tensors' device.
    """
    del flash, platform
    query, key, value = (
        tensor.transpose(1, 2).contiguous() for tensor in (query, key, value)
    )
    with sdpa_kernel(_FUSED_BACKENDS):
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, scale=scale
        )
    return out.transpose(1, 2)
