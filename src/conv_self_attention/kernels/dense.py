"""The dense kernel: materialises the full (N, M) score matrix per head."""

from keras import ops


def attention_logits(query, key, scale):
    """The attention logits, in float32 (fp16 ones overflow before the
    softmax).

    Args:
        query: tensor, `(B, N, h, dk)`.
        key: tensor, `(B, M, h, dk)`.
        scale: float, the factor on the logits.

    Returns:
        A float32 tensor `(B, h, N, M)`.
    """
    query = ops.cast(query, "float32")
    key = ops.cast(key, "float32")
    logits = ops.einsum("bnhd,bmhd->bhnm", query, key)
    return logits if scale == 1.0 else logits * scale


def dense_attention(query, key, value, scale):
    """Returns `(out, scores)`; scores are float32 softmax probabilities."""
    scores = ops.softmax(attention_logits(query, key, scale), axis=-1)
    out = ops.einsum("bhnm,bmhd->bnhd", scores, ops.cast(value, "float32"))
    return ops.cast(out, value.dtype), scores
