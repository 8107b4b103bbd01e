"""The chunked kernel for TensorFlow: a loop over query blocks with a
handwritten, recomputing gradient (`tf.custom_gradient`).

N may be unknown when traced (`tf.function` with relaxed shapes): the
query axis is padded to whole blocks with a dynamic pad, looped over with
`tf.map_fn` / `tf.while_loop`, and sliced back. Measured against a Python
loop of `tf.recompute_grad` blocks, the explicit backward pass is faster:
it reuses the saved row log-sum-exp instead of redoing the softmax, and
nothing is captured by a recomputed closure (which TF cannot differentiate
when variables are involved).
"""

import tensorflow as tf

# One block at a time: parallel iterations would multiply the O(block x M)
# working set and only contend for the same cores.
_PARALLEL_ITERATIONS = 1


def chunked_attention(query, key, value, scale, plan, *, exporting):
    """`query (B, h, N, dk)`, `key (B, h, M, dk)`, `value (B, h, M, dv)`,
    all float32, to `(B, h, N, dv)` float32 in the blocks of `plan` (a
    `BlockPlan`); `plan.per_image`: blocks of one image at a time
    (`tf.map_fn` over the batch, which may be unknown)."""
    # Exported TF and JAX programs hold the same ops as any trace.
    del exporting
    scale, chunk_size = float(scale), int(plan.chunk_size)
    if not plan.per_image:
        return _whole_batch(query, key, value, scale, chunk_size)

    def one_image(image):
        image_query, image_key, image_value = (x[None] for x in image)
        out = _whole_batch(
            image_query, image_key, image_value, scale, chunk_size
        )
        return out[0]

    return tf.map_fn(
        one_image,
        (query, key, value),
        fn_output_signature=tf.float32,
        parallel_iterations=_PARALLEL_ITERATIONS,
    )


def _whole_batch(query, key, value, scale, chunk_size):
    """Blocks of `chunk_size` queries of every image."""

    @tf.custom_gradient
    def attend(query, key, value):
        scaled = query * scale if scale != 1.0 else query
        blocks = _split_blocks(scaled, chunk_size)
        # Transposed once here so that no per-block matmul transposes a
        # large operand (TF's CPU batch matmul copies transposed inputs).
        key_t = tf.linalg.matrix_transpose(key)
        # One output per block, the output and its log-sum-exp side by
        # side: a loop whose outputs differ in shape needs TensorLists that
        # LiteRT cannot hold (its converter then fails or emits Flex ops).
        packed = tf.map_fn(
            lambda block: _block_forward(block, key_t, value),
            blocks,
            fn_output_signature=tf.float32,
            parallel_iterations=_PARALLEL_ITERATIONS,
        )
        out_blocks, lse_blocks = packed[..., :-1], packed[..., -1:]
        out = _merge_blocks(out_blocks, _length(query))

        def grad(grad_out):
            residuals = (blocks, key_t, key, value, out_blocks, lse_blocks)
            grad_out = _split_blocks(grad_out, chunk_size)
            grad_query, grad_key, grad_value = _backward(residuals, grad_out)
            grad_query = _merge_blocks(grad_query, _length(query))
            if scale != 1.0:
                grad_query = grad_query * scale
            return grad_query, grad_key, grad_value

        return out, grad

    return attend(query, key, value)


def _dim(tensor, axis):
    """A size, static where known: exported loops then have a fixed count,
    and shapes stay known through the backward pass's loop."""
    size = tensor.shape[axis]
    return tf.shape(tensor)[axis] if size is None else size


def _length(tensor):
    return _dim(tensor, 2)


def _split_blocks(tensor, chunk_size):
    """`(B, h, N, d)` zero-padded to whole blocks, `(blocks, B, h, c, d)`."""
    length = _length(tensor)
    num_blocks = (length + chunk_size - 1) // chunk_size
    padding = num_blocks * chunk_size - length
    tensor = tf.pad(tensor, [[0, 0], [0, 0], [0, padding], [0, 0]])
    batch, heads, width = (_dim(tensor, axis) for axis in (0, 1, 3))
    tensor = tf.reshape(
        tensor, [batch, heads, num_blocks, chunk_size, width]
    )
    return tf.transpose(tensor, [2, 0, 1, 3, 4])


def _merge_blocks(blocks, length):
    """Inverse of `_split_blocks`: back to `(B, h, N, d)`."""
    tensor = tf.transpose(blocks, [1, 2, 0, 3, 4])
    num_blocks, batch, heads, chunk_size, width = (
        _dim(blocks, axis) for axis in range(5)
    )
    tensor = tf.reshape(
        tensor, [batch, heads, num_blocks * chunk_size, width]
    )
    return tensor[:, :, :length]


def _block_forward(query, key_t, value):
    """One block: output and row log-sum-exp (the backward pass needs it),
    concatenated on the last axis, `(B, h, c, dv + 1)`."""
    logits = tf.matmul(query, key_t)
    row_max = tf.reduce_max(logits, axis=-1, keepdims=True)
    weights = tf.exp(logits - row_max)
    row_sum = tf.reduce_sum(weights, axis=-1, keepdims=True)
    # Normalising the (block, dv) output is cheaper than the (block, M) P.
    out = tf.matmul(weights, value) / row_sum
    return tf.concat([out, row_max + tf.math.log(row_sum)], axis=-1)


def _block_backward(query, key_t, key, value_t, out, lse, grad):
    """One block's gradients, recomputing its probabilities from `lse`.

    The key and value gradients come out transposed, `(B, h, d, M)`: that
    way the (block x M) matrices are only ever plain right-hand operands.
    """
    probs = tf.exp(tf.matmul(query, key_t) - lse)
    grad_probs = tf.matmul(grad, value_t)
    # rowsum(dP * P) equals rowsum(dO * O): O(block x dv), not x M.
    delta = tf.reduce_sum(grad * out, axis=-1, keepdims=True)
    grad_logits = probs * (grad_probs - delta)
    grad_query = tf.matmul(grad_logits, key)
    grad_key_t = tf.matmul(query, grad_logits, transpose_a=True)
    grad_value_t = tf.matmul(grad, probs, transpose_a=True)
    return grad_query, grad_key_t, grad_value_t


def _backward(residuals, grad_blocks):
    query_blocks, key_t, key, value, out_blocks, lse_blocks = residuals
    value_t = tf.linalg.matrix_transpose(value)
    num_blocks = tf.shape(query_blocks)[0]
    grad_query = tf.TensorArray(tf.float32, size=num_blocks)

    def body(index, grad_query, grad_key_t, grad_value_t):
        block_grads = _block_backward(
            query_blocks[index],
            key_t,
            key,
            value_t,
            out_blocks[index],
            lse_blocks[index],
            grad_blocks[index],
        )
        return (
            index + 1,
            grad_query.write(index, block_grads[0]),
            grad_key_t + block_grads[1],
            grad_value_t + block_grads[2],
        )

    _, grad_query, grad_key_t, grad_value_t = tf.while_loop(
        lambda index, *_: index < num_blocks,
        body,
        (0, grad_query, tf.zeros_like(key_t), tf.zeros_like(value_t)),
        parallel_iterations=_PARALLEL_ITERATIONS,
    )
    return (
        grad_query.stack(),
        tf.linalg.matrix_transpose(grad_key_t),
        tf.linalg.matrix_transpose(grad_value_t),
    )
