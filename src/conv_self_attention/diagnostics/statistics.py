"""Is the attention doing anything? Statistics of trained attention layers.

For each self-attention layer, on a batch of inputs:

- `gamma`: the learned weight of the attention branch.
- `contribution`: per example, `||gamma * attended|| / ||shortcut||` (L2
  norms over all positions and channels), averaged over the batch. Examples
  whose shortcut is all zeros are skipped; `nan` if all are. Exact, over
  all query positions.
- `entropy`: attention entropy over the `M` keys divided by `log M`,
  averaged over queries and heads: 1 is uniform attention, 0 means each
  query looks at a single key (defined as 0 when `M = 1`).
- `mean_distance`: expected Euclidean distance, in input grid cells, from
  a query to the keys it attends to, averaged over queries and heads. A
  pooled key sits at the mean coordinate of the input cells its window
  covers (partial `padding="same"` windows: only the cells inside).
- `local_mass`: attention mass on keys within one input cell of the query
  (Chebyshev distance <= 1, positions as above).

Logits, softmax and statistics are float32, also under mixed precision
(the projections run as in the layer). At most `max_logits` (default
`2**28`) float32 logits are held at once, whatever the batch, heads and
map sizes: the work is done in blocks of examples and queries. When the
logits of all queries of the batch would exceed `max_logits`, entropy,
distance and local mass are computed exactly on a seeded random sample of
query positions (`plan_query_sample`, `sample_query_indices`).
"""

import math

import numpy as np
from keras import ops

from conv_self_attention.checks import positive_int
from conv_self_attention.diagnostics.reaching import inputs_per_layer
from conv_self_attention.diagnostics.sampling import MAX_LOGITS
from conv_self_attention.diagnostics.sampling import key_coordinates
from conv_self_attention.diagnostics.sampling import pairwise_distances
from conv_self_attention.diagnostics.sampling import plan_query_sample
from conv_self_attention.diagnostics.sampling import query_coordinates
from conv_self_attention.diagnostics.sampling import sample_query_indices

STATISTICS = ("gamma", "contribution", "entropy", "mean_distance",
              "local_mass")


def attention_statistics(
    model_or_layer, inputs, *, per_head=False, sample_size=None, seed=0,
    max_logits=MAX_LOGITS,
):
    """Measures how much, how broadly and how far each attention layer looks.

    The statistics are described in this module's docstring. For a
    functional or Sequential model, every self-attention layer is found
    (nested models included) and fed what reaches it from `inputs`. For a
    subclassed model, pass the layer itself with the inputs that reach it.

    Args:
        model_or_layer: a functional or Sequential `keras.Model`, or a
            self-attention layer.
        inputs: a batch for the model (array, or the structure of its
            inputs) or for the layer.
        per_head: also return `entropy`, `mean_distance` and `local_mass`
            per head, as `"<statistic>/head_<j>"`. Defaults to `False`.
        sample_size: number of query positions for entropy, distance and
            local mass. Defaults to `None`: all of them when their logits
            fit in `max_logits`, else the largest sample that fits.
        seed: seed of the query sample. Defaults to `0`.
        max_logits: most float32 logits held at once. Defaults to `2**28`.

    Returns:
        `{layer_path: {statistic: float}}`; `layer_path` is the layer's
        name, prefixed by its nested models' names (`"outer/inner"`).

    Raises:
        ValueError: if there is no self-attention layer, `inputs` do not
            fit, or `sample_size` is not a positive int.

    Example:

    ```python
    stats = attention_statistics(model, x_test[:64])
    print(stats["self_attention2d"]["mean_distance"])
    ```
    """
    positive_int("sample_size", sample_size, allow_none=True)
    positive_int("max_logits", max_logits)
    options = {"per_head": per_head, "sample_size": sample_size,
               "seed": seed, "max_logits": max_logits}
    return {
        path: _layer_statistics(layer, layer_inputs, **options)
        for path, layer, layer_inputs in inputs_per_layer(
            model_or_layer, inputs
        )
    }


def attention_distances(layer, inputs, *, sample_size=None, seed=0,
                        max_logits=MAX_LOGITS):
    """Attention weight per query-key distance, for one layer.

    Args:
        layer: a self-attention layer.
        inputs: a batch that reaches the layer.
        sample_size: as in `attention_statistics`.
        seed: as in `attention_statistics`.
        max_logits: as in `attention_statistics`.

    Returns:
        `(distances, weights)`, both `(S, M)` for the `S` evaluated query
        positions: the Euclidean distance in input cells to each key, and
        the attention weight averaged over examples and heads (rows sum
        to 1). Uniform attention would give every key `1 / M`.
    """
    (_, layer, layer_inputs), = inputs_per_layer(layer, inputs)
    result = _run(layer, layer_inputs, sample_size, seed, max_logits,
                  collect_weights=True)
    return result["distances"], result["weights"]


def _layer_statistics(layer, inputs, per_head, sample_size, seed,
                      max_logits):
    result = _run(layer, inputs, sample_size, seed, max_logits)
    per_query = result["count"]
    stats = {"gamma": result["gamma"]}
    contribution = result["contribution"]
    stats["contribution"] = (
        float(np.mean(contribution)) if len(contribution) else math.nan
    )
    for name in ("entropy", "mean_distance", "local_mass"):
        heads = result[name] / per_query
        stats[name] = float(np.mean(heads))
        if per_head:
            stats.update({f"{name}/head_{j}": float(value)
                          for j, value in enumerate(heads)})
    return stats


def _run(layer, inputs, sample_size, seed, max_logits,
         collect_weights=False):
    """Accumulates every statistic over blocks of examples and queries."""
    spatial = layer._spatial_shape(inputs.shape)
    num_queries = math.prod(spatial)
    keys = key_coordinates(spatial, layer.pool_size)
    plan = plan_query_sample(
        inputs.shape[0], layer.num_heads, num_queries, len(keys),
        max_logits=max_logits, sample_size=sample_size,
    )
    rows = sample_query_indices(num_queries, plan.num_sampled, seed)
    queries = query_coordinates(spatial)
    sums = {name: np.zeros(layer.num_heads)
            for name in ("entropy", "mean_distance", "local_mass")}
    sums["weights"] = np.zeros((len(rows), len(keys))) if (
        collect_weights) else None
    contribution = []
    every_query = len(rows) == num_queries
    gamma = float(ops.convert_to_numpy(layer.gamma.value))
    for start in range(0, inputs.shape[0], plan.examples_per_step):
        batch = inputs[start : start + plan.examples_per_step]
        query, key, value, shortcut = (
            ops.cast(t, "float32") for t in layer.attention_inputs(batch)
        )
        scale = 1.0 / math.sqrt(query.shape[-1]) if layer.use_scale else 1.0
        attended = np.zeros(len(batch))
        for offset, block, probs in _blocks(
            query, key, scale, np.arange(num_queries), plan
        ):
            attended += _attended_squares(layer, probs, value)
            if every_query:
                _add_row_stats(sums, offset, probs, queries[block], keys)
        if not every_query:
            for offset, block, probs in _blocks(query, key, scale, rows, plan):
                _add_row_stats(sums, offset, probs, queries[block], keys)
        shortcut_norm = np.sqrt(ops.convert_to_numpy(
            ops.sum(ops.square(shortcut),
                    axis=tuple(range(1, len(shortcut.shape))))
        ))
        kept = shortcut_norm > 0
        contribution.extend(abs(gamma) * np.sqrt(attended[kept])
                            / shortcut_norm[kept])
    sums["count"] = inputs.shape[0] * len(rows)
    sums["contribution"] = contribution
    sums["gamma"] = gamma
    if collect_weights:
        sums["weights"] /= inputs.shape[0] * layer.num_heads
        sums["distances"] = pairwise_distances(queries[rows], keys)
    return sums


def _blocks(query, key, scale, rows, plan):
    """Yields `(offset, rows_of_block, probabilities (B, h, n, M))`."""
    for offset in range(0, len(rows), plan.queries_per_step):
        block = rows[offset : offset + plan.queries_per_step]
        block_query = ops.take(query, ops.convert_to_tensor(block), axis=1)
        logits = ops.einsum("bnhd,bmhd->bhnm", block_query, key) * scale
        yield offset, block, ops.softmax(logits, axis=-1)


def _attended_squares(layer, probs, value):
    """Per example, the sum of squares of `attended` for the block."""
    context = ops.einsum("bhnm,bmhd->bnhd", probs, value)
    context = ops.reshape(
        context, (*ops.shape(context)[:2], layer.resolved_value_channels)
    )
    attended = ops.cast(layer.output_projection(context), "float32")
    return ops.convert_to_numpy(ops.sum(ops.square(attended), axis=(1, 2)))


def _add_row_stats(sums, offset, probs, block_queries, keys):
    """Adds the entropy, distance and local mass of one block, per head."""
    num_keys = len(keys)
    distance = ops.convert_to_tensor(pairwise_distances(block_queries, keys))
    chebyshev = np.abs(block_queries[:, None] - keys[None]).max(axis=-1)
    local = ops.convert_to_tensor((chebyshev <= 1.0).astype("float32"))
    safe = ops.where(probs > 0, probs, 1.0)
    entropy = -ops.sum(probs * ops.log(safe), axis=-1)
    if num_keys > 1:
        sums["entropy"] += _per_head(entropy) / math.log(num_keys)
    sums["mean_distance"] += _per_head(
        ops.einsum("bhnm,nm->bhn", probs, distance)
    )
    sums["local_mass"] += _per_head(ops.einsum("bhnm,nm->bhn", probs, local))
    if sums["weights"] is not None:
        rows = slice(offset, offset + len(block_queries))
        sums["weights"][rows] += ops.convert_to_numpy(
            ops.sum(probs, axis=(0, 1))
        )


def _per_head(values):
    """Sums `(B, h, n)` over examples and queries to `(h,)`, in float64."""
    return ops.convert_to_numpy(values).astype("float64").sum(axis=(0, 2))
