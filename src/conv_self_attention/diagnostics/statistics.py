"""Is the attention doing anything? Statistics of trained attention layers.

For each self-attention layer, on a batch of inputs:

- `gamma`: the learned weight of the attention branch. Only the product of
  `gamma` and the output projection matters, so its sign is arbitrary.
- `contribution`: per example, `||gamma * attended|| / ||shortcut||` (L2
  norms over all positions and channels), averaged over the batch: how
  much the attention branch adds to what passes through. Examples whose
  shortcut is all zeros are skipped; `nan` if all are. Exact, over all
  query positions.
- `entropy`: attention entropy over the `M` keys divided by `log M`,
  averaged over queries and heads: 1 is uniform attention, 0 means each
  query looks at a single key (defined as 0 when `M = 1`).
- `effective_keys`: per query and head, the number of keys the attention
  is spread over, `exp(entropy in nats)` (M for uniform attention, 1 for
  one key, k for an even split over k keys), averaged over queries and
  heads (and per head with `per_head=True`). This is not `M ** entropy`
  of the mean entropy: when heads or queries differ, the exponential of
  a mean is not the mean of the exponentials (a head on 1 key and a head
  on 64 average 32.5 effective keys; `M ** entropy` would say 8).
- `mean_distance`: expected Euclidean distance, in input grid cells, from
  a query to the keys it attends to, averaged over queries and heads. A
  pooled key sits at the mean coordinate of the input cells its window
  covers (partial `padding="same"` windows: only the cells inside).
- `local_mass`: attention mass on the keys local to the query: the key
  whose pooling window contains the query and those of the neighbouring
  windows (without pooling: the keys within one cell, Chebyshev distance
  <= 1). Perfectly local attention scores 1 at every pool size.
- `query_dependence`: how much the attention depends on the query. Per
  example and head, the mean attention distribution over all `N` queries
  (exact); the statistic is the total variation distance of each query's
  distribution to that mean, averaged over queries, heads and examples.
  0 means every query attends the same way (a global-context pooling
  that a cheaper block could compute); one-hot attention of each query to
  itself gives `1 - 1/N`, the most it can be, so its range is 0 to
  `1 - 1/N`. Near-uniform attention keeps it near 0 whatever the queries
  do: every distribution, and so their mean, is close to uniform, and the
  total variation distance to the mean is at most twice the largest one
  to uniform. Read it with `entropy`: a low value with a high entropy
  says little.

Beside them, what uniform attention over the same keys would give (every
key `1 / M`), as the baseline to read the statistic against:

- `uniform_contribution`: `contribution` if every query attended
  uniformly, with the layer's trained value and output projections and
  `gamma` (each position then receives the mean of the values).
- `uniform_mean_distance`, `uniform_local_mass`: the mean distance to all
  keys and the share of local keys, over the same sampled queries.

With `per_head=True`, every statistic but `gamma` also per head,
`"<statistic>/head_<j>"`. Head `j`'s contribution is that of its share of
the output: rows `j * dv/h` to `(j + 1) * dv/h - 1` of the output
projection's kernel (spectrally normalized where the layer is), bias
excluded. The heads' contributions do not add up to the layer's: norms of
a sum are not sums of norms.

Logits, softmax and statistics are float32, also under mixed precision
(the projections run as in the layer). The work is done in blocks of
examples and queries whose arrays take at most `max_bytes` (default 256
MiB; every array of a block's size is counted, see `plan_query_sample`).
Entropy, distance, local mass and query dependence are computed on a
seeded random sample of query positions (all of them up to
`AUTO_SAMPLE_SIZE` = 1024, or `sample_size`); the sample size does not
depend on `max_bytes`. `contribution` and the mean distributions are
computed over all queries. Each block's work is done by
`conv_self_attention.diagnostics.accumulation`.
"""

import math

import numpy as np
from keras import ops

from conv_self_attention import checks
from conv_self_attention.diagnostics.accumulation import add_row_statistics
from conv_self_attention.diagnostics.accumulation import floats_held
from conv_self_attention.diagnostics.accumulation import full_pass
from conv_self_attention.diagnostics.accumulation import output_head_kernel
from conv_self_attention.diagnostics.accumulation import output_squares
from conv_self_attention.diagnostics.reaching import inputs_per_layer
from conv_self_attention.diagnostics.sampling import MAX_BYTES
from conv_self_attention.diagnostics.sampling import key_coordinates
from conv_self_attention.diagnostics.sampling import local_keys
from conv_self_attention.diagnostics.sampling import pairwise_distances
from conv_self_attention.diagnostics.sampling import plan_query_sample
from conv_self_attention.diagnostics.sampling import query_coordinates
from conv_self_attention.diagnostics.sampling import sample_query_indices

STATISTICS = ("gamma", "contribution", "entropy", "effective_keys",
              "mean_distance", "local_mass", "query_dependence")
"""The names of the statistics, in the order `attention_statistics` returns
them (the module's docstring defines each)."""
BASELINES = {"contribution": "uniform_contribution",
             "mean_distance": "uniform_mean_distance",
             "local_mass": "uniform_local_mass"}
"""The key of each statistic's baseline in a result: what uniform attention
over the same keys gives (for `contribution`, with the trained value and
output projections)."""
_ROW_STATISTICS = ("entropy", "effective_keys", "mean_distance",
                   "local_mass", "query_dependence")


class LayerStatistics(dict):
    """`{statistic: float}` of one layer, with the query sample size used.

    A plain dict of the statistics, plus `sample_size`: the number of
    query positions on which entropy, distance, local mass and query
    dependence were computed (per example and head).
    `attention_statistics` returns one per layer.

    Args:
        values: dict, the `{statistic: float}` items.
        sample_size: int, the number of query positions sampled.
    """

    def __init__(self, values, sample_size):
        super().__init__(values)
        self.sample_size = sample_size


def attention_statistics(
    model_or_layer, inputs, *, per_head=False, sample_size=None, seed=0,
    max_bytes=MAX_BYTES,
):
    """Measures how much, how broadly, how far and how query-dependently
    each attention layer looks.

    The statistics are described in this module's docstring. For a
    functional or Sequential model, every self-attention layer is found
    (nested models included) and fed what reaches it from `inputs`; a
    layer called at several places is measured at each. For a subclassed
    model, pass the layer itself with the inputs that reach it.

    Cost: the logits of all `N x M` query-key pairs are computed once per
    example and head (for `contribution` and the mean distributions), and
    those of the sampled queries once more.

    Args:
        model_or_layer: keras.Model or BaseSelfAttention, a functional or
            Sequential `keras.Model`, or a built self-attention layer.
        inputs: array or structure, a batch for the model (array, or the
            structure of its inputs) or for the layer.
        per_head: bool, also return every statistic but `gamma` per head, as
            `"<statistic>/head_<j>"`. Defaults to `False`.
        sample_size: int or None, number of query positions for entropy,
            distance, local mass and query dependence. Defaults to `None`: all
            of them up to 1024, else a sample of 1024.
        seed: int, seed of the query sample, a non-negative int. Defaults to
            `0`.
        max_bytes: int, most bytes the statistics' arrays take at once. Defaults
            to 256 MiB.

    Returns:
        `{layer_path: LayerStatistics}`, each a `{statistic: float}` dict
        (the statistics, then the uniform-attention baselines
        `uniform_contribution`, `uniform_mean_distance` and
        `uniform_local_mass`) with the sample size used as its
        `sample_size` attribute.
        `layer_path` is the layer's name, prefixed by its nested models'
        names (`"outer/inner"`), and followed by `/call_<k>` for each call
        of a layer called more than once.

    Raises:
        ValueError: if there is no self-attention layer, a layer was
            never built, `inputs` do not fit, or an argument is invalid.
        TypeError: if the inputs of a layer are not floating-point.

    Example:

    ```python
    >>> import keras
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> from conv_self_attention import attention_statistics
    >>> inputs = keras.Input((8, 8, 16))
    >>> layer = SelfAttention2D(num_heads=2, gamma=0.5, name="attention")
    >>> model = keras.Model(inputs, layer(inputs))
    >>> x = np.random.default_rng(0).normal(size=(4, 8, 8, 16))
    >>> stats = attention_statistics(model, x.astype("float32"))
    >>> for name in stats["attention"]:
    ...     print(name)
    gamma
    contribution
    entropy
    effective_keys
    mean_distance
    local_mass
    query_dependence
    uniform_contribution
    uniform_mean_distance
    uniform_local_mass
    >>> stats["attention"]["gamma"], stats["attention"].sample_size
    (0.5, 64)
    >>> 0.0 <= stats["attention"]["entropy"] <= 1.0
    True
    ```
    """
    options = checked_options(per_head=per_head, sample_size=sample_size,
                              seed=seed, max_bytes=max_bytes)
    return {
        path: _layer_statistics(layer, layer_inputs, **options)
        for path, layer, layer_inputs in inputs_per_layer(
            model_or_layer, inputs
        )
    }


def attention_distances(layer, inputs, *, sample_size=None, seed=0,
                        max_bytes=MAX_BYTES):
    """Attention weight per query-key distance, for one layer.

    Args:
        layer: BaseSelfAttention, a built self-attention layer.
        inputs: array, a batch that reaches the layer.
        sample_size: int or None, as in `attention_statistics`.
        seed: int, as in `attention_statistics`.
        max_bytes: int, as in `attention_statistics`.

    Returns:
        `(distances, weights)`, both `(S, M)` for the `S` evaluated query
        positions: the Euclidean distance in input cells to each key, and
        the attention weight averaged over examples and heads (rows sum
        to 1). Uniform attention would give every key `1 / M`.
    """
    options = checked_options(per_head=False, sample_size=sample_size,
                              seed=seed, max_bytes=max_bytes)
    (_, layer, layer_inputs), = inputs_per_layer(layer, inputs)
    result = _run(layer, layer_inputs, **options, collect_weights=True)
    return result["distances"], result["weights"]


def checked_options(*, per_head, sample_size, seed, max_bytes):
    """The statistics' options, checked (`attention_statistics`' Args)."""
    return {
        "per_head": checks.boolean("per_head", per_head),
        "sample_size": checks.positive_int("sample_size", sample_size,
                                           allow_none=True),
        "seed": checks.non_negative_int("seed", seed),
        "max_bytes": checks.positive_int("max_bytes", max_bytes),
    }


def _layer_statistics(layer, inputs, **options):
    result = _run(layer, inputs, **options)
    stats = {"gamma": result["gamma"]}
    stats.update(_contribution(result["contribution"], "contribution",
                               options["per_head"]))
    for name in _ROW_STATISTICS:
        heads = result[name] / result["count"]
        stats[name] = float(np.mean(heads))
        if options["per_head"]:
            stats.update({f"{name}/head_{j}": float(value)
                          for j, value in enumerate(heads)})
    stats.update(_contribution(result["uniform_contribution"],
                               "uniform_contribution", options["per_head"]))
    stats["uniform_mean_distance"] = result["uniform_mean_distance"]
    stats["uniform_local_mass"] = result["uniform_local_mass"]
    return LayerStatistics(_ordered(stats), result["sample_size"])


def _contribution(shares, name, per_head):
    """`{name: mean}` (and per head) of `(kept examples, 1 + heads)`."""
    heads = shares.mean(axis=0) if len(shares) else np.full(
        shares.shape[1], math.nan)
    values = {name: float(heads[0])}
    if per_head:
        values.update({f"{name}/head_{j}": float(value)
                       for j, value in enumerate(heads[1:])})
    return values


def _ordered(stats):
    """The statistics in `STATISTICS` order, each followed by its heads,
    then the baselines."""
    order = [*STATISTICS, *BASELINES.values()]

    def rank(key):
        base, _, head = key.partition("/head_")
        return order.index(base), int(head or -1)
    return {key: stats[key] for key in sorted(stats, key=rank)}


def _run(layer, inputs, per_head, sample_size, seed, max_bytes,
         collect_weights=False):
    """Accumulates every statistic over blocks of examples and queries."""
    spatial = layer.spatial_shape(inputs.shape)
    num_queries = math.prod(spatial)
    keys = key_coordinates(spatial, layer.pool_size)
    plan = plan_query_sample(
        inputs.shape[0], layer.num_heads, num_queries, len(keys),
        sample_size=sample_size, max_bytes=max_bytes,
        **floats_held(layer, inputs.shape, len(keys), per_head),
    )
    rows = sample_query_indices(num_queries, plan.num_sampled, seed)
    grid = {"queries": query_coordinates(spatial), "keys": keys,
            "spatial": spatial, "pool_size": layer.pool_size}
    sums = {name: np.zeros(layer.num_heads) for name in _ROW_STATISTICS}
    sums["weights"] = np.zeros((len(rows), len(keys))) if (
        collect_weights) else None
    contribution, uniform = [], []
    gamma = float(ops.convert_to_numpy(layer.gamma.value))
    head_kernel = output_head_kernel(layer) if per_head else None
    for start in range(0, inputs.shape[0], plan.examples_per_step):
        batch = inputs[start : start + plan.examples_per_step]
        query, key, value, shortcut = (
            ops.cast(t, "float32") for t in layer.attention_inputs(batch)
        )
        scale = layer.attention_scale
        squares, mean = full_pass(layer, query, key, value, scale, plan,
                                  head_kernel)
        uniform_squares = num_queries * output_squares(
            layer, ops.mean(value, axis=1, keepdims=True), head_kernel)
        for offset in range(0, len(rows), plan.queries_per_step):
            block = rows[offset : offset + plan.queries_per_step]
            add_row_statistics(sums, offset, block, query, key, scale,
                               mean, grid)
        norm = np.sqrt(ops.convert_to_numpy(ops.sum(
            ops.square(shortcut), axis=tuple(range(1, len(shortcut.shape)))
        )))
        kept = norm > 0
        contribution.extend(abs(gamma) * np.sqrt(squares[kept])
                            / norm[kept][:, None])
        uniform.extend(abs(gamma) * np.sqrt(uniform_squares[kept])
                       / norm[kept][:, None])
    sums["count"] = inputs.shape[0] * len(rows)
    width = 1 + (layer.num_heads if per_head else 0)
    sums["contribution"] = np.reshape(contribution, (-1, width))
    sums["uniform_contribution"] = np.reshape(uniform, (-1, width))
    distances = pairwise_distances(grid["queries"][rows], keys)
    sums["uniform_mean_distance"] = float(np.mean(distances))
    sums["uniform_local_mass"] = float(np.mean(
        local_keys(spatial, layer.pool_size, rows)))
    sums["gamma"] = gamma
    sums["sample_size"] = len(rows)
    if collect_weights:
        sums["weights"] /= inputs.shape[0] * layer.num_heads
        sums["distances"] = distances
    return sums
