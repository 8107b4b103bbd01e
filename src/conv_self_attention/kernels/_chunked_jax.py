"""The chunked kernel for JAX: `lax.map` over query blocks, `custom_vjp`.

The backward pass walks the blocks again with `lax.scan`, recomputing each
block's probabilities from the saved row log-sum-exp, so no block's
probabilities outlive its step and peak memory stays O(block x M).
A handwritten backward pass beats `jax.checkpoint` here: it skips the
second max/sum reduction and the autodiff bookkeeping of the softmax.

Traced for an exporter (`export_model`), the blocks are unrolled instead,
each a matmul, a softmax and a matmul: ONNX Runtime runs those as its own
fused ops, where the `lax.map` form becomes an ONNX `Loop` that ran
several times slower (the Deploying guide's speed table), and jax2onnx
converts them in seconds instead of the half minute it spent on
`custom_vjp`.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax


def chunked_attention(query, key, value, scale, plan, *, exporting):
    """`query (B, h, N, dk)`, `key (B, h, M, dk)`, `value (B, h, M, dv)`,
    all float32, to `(B, h, N, dv)` float32 in the blocks of `plan` (a
    `BlockPlan`); `plan.per_image`: blocks of one image at a time
    (`lax.map` over the batch, which may be symbolic); `exporting`: the
    unrolled form for exporters, where N is static (forward only)."""
    scale, chunk_size = float(scale), int(plan.chunk_size)
    if exporting and isinstance(query.shape[2], int):
        return _unrolled(query, key, value, scale, chunk_size)
    if not plan.per_image:
        return _attend(query, key, value, scale, chunk_size)

    def one_image(image):
        image_query, image_key, image_value = (x[None] for x in image)
        out = _attend(image_query, image_key, image_value, scale, chunk_size)
        return out[0]

    return lax.map(one_image, (query, key, value))


def _unrolled(query, key, value, scale, chunk_size):
    """The blocks as a Python loop over static slices of N (inference)."""
    scaled = query * scale if scale != 1.0 else query
    key_t = jnp.swapaxes(key, -1, -2)

    def block(start):
        logits = jnp.matmul(scaled[:, :, start:start + chunk_size], key_t)
        return jnp.matmul(jax.nn.softmax(logits, axis=-1), value)

    starts = range(0, query.shape[2], chunk_size)
    return jnp.concatenate([block(start) for start in starts], axis=2)


def _split_blocks(tensor, chunk_size):
    """`(B, h, N, d)` zero-padded to whole blocks, `(blocks, B, h, c, d)`."""
    batch, heads, length, width = tensor.shape
    num_blocks = -(-length // chunk_size)
    padding = num_blocks * chunk_size - length
    tensor = jnp.pad(tensor, ((0, 0), (0, 0), (0, padding), (0, 0)))
    tensor = tensor.reshape(batch, heads, num_blocks, chunk_size, width)
    return jnp.moveaxis(tensor, 2, 0)


def _merge_blocks(blocks, length):
    """Inverse of `_split_blocks`: back to `(B, h, N, d)`."""
    num_blocks, batch, heads, chunk_size, width = blocks.shape
    tensor = jnp.moveaxis(blocks, 0, 2)
    tensor = tensor.reshape(batch, heads, num_blocks * chunk_size, width)
    return tensor[:, :, :length]


def _block_forward(query, key, value):
    """One block: output and row log-sum-exp (the backward pass needs it)."""
    logits = jnp.einsum("bhnd,bhmd->bhnm", query, key)
    row_max = lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    weights = jnp.exp(logits - row_max)
    row_sum = jnp.sum(weights, axis=-1, keepdims=True)
    # Normalising the (block, dv) output is cheaper than the (block, M) P.
    out = jnp.einsum("bhnm,bhmd->bhnd", weights, value) / row_sum
    return out, row_max + jnp.log(row_sum)


def _forward(query, key, value, scale, chunk_size):
    length = query.shape[2]
    # Scaling q (N x dk) is cheaper than scaling the logits (N x M).
    scaled = query * scale if scale != 1.0 else query
    blocks = _split_blocks(scaled, chunk_size)
    out, lse = lax.map(lambda block: _block_forward(block, key, value), blocks)
    return _merge_blocks(out, length), (scaled, key, value, out, lse)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _attend(query, key, value, scale, chunk_size):
    return _forward(query, key, value, scale, chunk_size)[0]


def _attend_fwd(query, key, value, scale, chunk_size):
    return _forward(query, key, value, scale, chunk_size)


def _attend_bwd(scale, chunk_size, residuals, grad_out):
    scaled, key, value, out_blocks, lse_blocks = residuals
    length = scaled.shape[2]
    query_blocks = _split_blocks(scaled, chunk_size)
    grad_blocks = _split_blocks(grad_out, chunk_size)

    def step(carry, block):
        grad_key, grad_value = carry
        query, out, lse, grad = block
        logits = jnp.einsum("bhnd,bhmd->bhnm", query, key)
        probs = jnp.exp(logits - lse)
        grad_probs = jnp.einsum("bhnd,bhmd->bhnm", grad, value)
        # rowsum(dP * P) equals rowsum(dO * O): O(block x dv), not x M.
        delta = jnp.sum(grad * out, axis=-1, keepdims=True)
        grad_logits = probs * (grad_probs - delta)
        grad_query = jnp.einsum("bhnm,bhmd->bhnd", grad_logits, key)
        grad_key += jnp.einsum("bhnm,bhnd->bhmd", grad_logits, query)
        grad_value += jnp.einsum("bhnm,bhnd->bhmd", probs, grad)
        return (grad_key, grad_value), grad_query

    init = (jnp.zeros_like(key), jnp.zeros_like(value))
    (grad_key, grad_value), grad_query = lax.scan(
        step, init, (query_blocks, out_blocks, lse_blocks, grad_blocks)
    )
    grad_query = _merge_blocks(grad_query, length)
    if scale != 1.0:
        # Padded query rows have zero output gradient, so they add nothing.
        grad_query = grad_query * scale
    return grad_query, grad_key, grad_value


_attend.defvjp(_attend_fwd, _attend_bwd)
