"""The per-block work behind `attention_statistics`.

`attention_statistics` (in `conv_self_attention.diagnostics.statistics`)
walks the examples and the query positions in blocks sized by
`plan_query_sample`; the functions here do one block's work: the
projections' float32 counts that size the blocks, the pass over all
queries (the norms of the attended values for `contribution`, the mean
attention distributions for `query_dependence`), and the sums of
entropy, effective keys, distance, local mass and query dependence over
the sampled queries, per head. They keep the sums; the statistics module
turns them into means.
"""

import math

import numpy as np
from keras import ops

from conv_self_attention.diagnostics.sampling import local_keys
from conv_self_attention.diagnostics.sampling import pairwise_distances
from conv_self_attention.kernels.dense import attention_logits


def floats_held(layer, input_shape, num_keys, per_head):
    """Float32 values held per example and per (example, query)."""
    num_queries = math.prod(layer.spatial_shape(input_shape))
    channels = input_shape[layer.channel_axis]
    widths = (layer.resolved_key_channels + layer.resolved_value_channels
              + layer.output_channels)
    # The projections of each example, before and after the float32 cast;
    # keys and values before pooling are as large as the queries.
    example = num_queries * (channels + 2 * widths) + 2 * num_keys * (
        layer.resolved_key_channels + layer.resolved_value_channels)
    # Per query: its attended values, the output projection (and its cast),
    # and with `per_head` each head's share of it.
    row = layer.resolved_value_channels + 2 * layer.output_channels
    if per_head:
        row += layer.num_heads * layer.output_channels
    return {"example_floats": example, "row_floats": row}


def output_head_kernel(layer):
    """The output projection's kernel in use, `(heads, dv / h, filters)`."""
    kernel = ops.cast(layer.output_projection.normalized_kernel(), "float32")
    return ops.reshape(kernel, (layer.num_heads, -1, kernel.shape[-1]))


def full_pass(layer, query, key, value, scale, plan, head_kernel):
    """Over all queries: per example the squared norm of `attended` (and of
    each head's share), and per example and head the mean distribution.

    Returns `(squares (B, 1 [+ h]), mean (B, h, M) float32 tensor)`.
    """
    num_queries = query.shape[1]
    squares = 0.0
    total = 0.0
    for start in range(0, num_queries, plan.queries_per_step):
        block = query[:, start : start + plan.queries_per_step]
        logits = attention_logits(block, key, scale)
        weights = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        del logits
        # The softmax's division is applied to the small results only.
        inverse = 1.0 / ops.sum(weights, axis=-1)
        total += ops.convert_to_numpy(ops.einsum(
            "bhnm,bhn->bhm", weights, inverse)).astype("float64")
        context = ops.einsum("bhnm,bmhd->bnhd", weights, value)
        del weights
        context = context * ops.transpose(inverse, (0, 2, 1))[..., None]
        squares = squares + output_squares(layer, context, head_kernel)
    return squares, ops.convert_to_tensor(
        (total / num_queries).astype("float32"))


def output_squares(layer, context, head_kernel):
    """Per example, the sum of squares of `attended` for the block, then
    of each head's share of it (without bias) when `head_kernel` is given.
    """
    merged = ops.reshape(
        context, (*ops.shape(context)[:2], layer.resolved_value_channels)
    )
    attended = ops.cast(layer.output_projection(merged), "float32")
    squares = [ops.sum(ops.square(attended), axis=(1, 2))[:, None]]
    if head_kernel is not None:
        shares = ops.einsum("bnhd,hdf->bnhf", context, head_kernel)
        squares.append(ops.sum(ops.square(shares), axis=(1, 3)))
    return np.concatenate(
        [ops.convert_to_numpy(s).astype("float64") for s in squares], axis=1
    )


def add_row_statistics(sums, offset, block, query, key, scale, mean, grid):
    """Adds entropy, distance, local mass and query dependence of the
    sampled queries `block`, per head."""
    logits = attention_logits(
        ops.take(query, ops.convert_to_tensor(block), axis=1), key, scale
    )
    shifted = logits - ops.max(logits, axis=-1, keepdims=True)
    del logits
    exponentials = ops.exp(shifted)
    total = ops.sum(exponentials, axis=-1)
    probs = exponentials / total[..., None]
    del exponentials
    num_keys = len(grid["keys"])
    # -sum p log p with log p = shifted - log(total): no log of zeros.
    entropy = ops.log(total) - ops.sum(probs * shifted, axis=-1)
    del shifted
    sums["effective_keys"] += _per_head(ops.exp(entropy))
    if num_keys > 1:
        sums["entropy"] += _per_head(entropy) / math.log(num_keys)
    distance = pairwise_distances(grid["queries"][block], grid["keys"])
    local = local_keys(grid["spatial"], grid["pool_size"], block)
    sums["mean_distance"] += _per_head(
        ops.einsum("bhnm,nm->bhn", probs, ops.convert_to_tensor(distance)))
    sums["local_mass"] += _per_head(ops.einsum(
        "bhnm,nm->bhn", probs, ops.convert_to_tensor(local.astype("float32"))
    ))
    sums["query_dependence"] += _per_head(
        0.5 * ops.sum(ops.abs(probs - mean[:, :, None, :]), axis=-1))
    if sums["weights"] is not None:
        rows = slice(offset, offset + len(block))
        sums["weights"][rows] += ops.convert_to_numpy(
            ops.sum(probs, axis=(0, 1))
        )


def _per_head(values):
    """Sums `(B, h, n)` over examples and queries to `(h,)`, in float64."""
    return ops.convert_to_numpy(values).astype("float64").sum(axis=(0, 2))
