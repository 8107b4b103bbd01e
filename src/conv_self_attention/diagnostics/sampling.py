"""Which query positions the statistics evaluate, and in what blocks.

Pure functions of sizes: they decide the work, and hold no tensors.
"""

import collections

import numpy as np

from conv_self_attention.checks import positive_int
from conv_self_attention.layers import key_value_grid
from conv_self_attention.layers.grid import normalize_pool_size

MAX_LOGITS = 2**28
QueryPlan = collections.namedtuple(
    "QueryPlan", ["num_sampled", "examples_per_step", "queries_per_step"]
)


def plan_query_sample(
    num_examples, num_heads, num_queries, num_keys, *,
    max_logits=MAX_LOGITS, sample_size=None,
):
    """Decides how many queries to evaluate and how to block the work.

    A pure function. One step holds `examples_per_step * num_heads *
    queries_per_step * num_keys <= max_logits` logits. All queries are
    evaluated when `num_examples * num_heads * num_queries * num_keys`
    fits in `max_logits`; otherwise the largest sample that fits (at
    least 1). An explicit `sample_size` overrides that choice (capped at
    `num_queries`).

    Args:
        num_examples: batch size `B`.
        num_heads: attention heads `h`.
        num_queries: query positions `N`.
        num_keys: key positions `M`.
        max_logits: most float32 logits held at once.
        sample_size: `None` or a positive int.

    Returns:
        A `QueryPlan(num_sampled, examples_per_step, queries_per_step)`.

    Raises:
        ValueError: if an argument is not a positive int, or one query row
            of all heads (`num_heads * num_keys`) exceeds `max_logits`.

    Example:

    ```python
    >>> plan_query_sample(8, 2, 4096, 4096, max_logits=2**24)
    QueryPlan(num_sampled=256, examples_per_step=8, queries_per_step=256)
    ```
    """
    for name, value in (("num_examples", num_examples),
                        ("num_heads", num_heads),
                        ("num_queries", num_queries),
                        ("num_keys", num_keys),
                        ("max_logits", max_logits)):
        positive_int(name, value)
    positive_int("sample_size", sample_size, allow_none=True)
    row = num_heads * num_keys
    if row > max_logits:
        raise ValueError(
            "One query row of logits (num_heads * num_keys = "
            f"{row}) exceeds `max_logits`. Received: max_logits={max_logits}"
        )
    per_query = num_examples * row
    if sample_size is not None:
        num_sampled = min(sample_size, num_queries)
    elif per_query * num_queries <= max_logits:
        num_sampled = num_queries
    else:
        num_sampled = max(1, max_logits // per_query)
    examples_per_step = min(num_examples, max_logits // row)
    queries_per_step = min(
        num_queries, max_logits // (examples_per_step * row)
    )
    return QueryPlan(num_sampled, examples_per_step, queries_per_step)


def sample_query_indices(num_queries, num_sampled, seed=0):
    """The sorted row-major query indices the statistics evaluate.

    All of `range(num_queries)` when `num_sampled >= num_queries`, else
    `num_sampled` distinct indices drawn uniformly with
    `numpy.random.default_rng(seed)`.

    Args:
        num_queries: the number of query positions `N` of the map.
        num_sampled: how many to draw (`plan_query_sample`'s sample size).
        seed: the seed of the NumPy generator. Defaults to `0`.

    Returns:
        A sorted NumPy int array of at most `num_sampled` indices.

    Example:

    ```python
    >>> from conv_self_attention.diagnostics import sample_query_indices
    >>> sample_query_indices(4, 8)
    array([0, 1, 2, 3])
    >>> len(sample_query_indices(1024, 16, seed=1))
    16
    ```
    """
    positive_int("num_queries", num_queries)
    positive_int("sample_size", num_sampled)
    if num_sampled >= num_queries:
        return np.arange(num_queries)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_queries, num_sampled, replace=False))


def query_coordinates(spatial_shape):
    """`(N, rank)` float32 coordinates of the input cells, row-major."""
    axes = [np.arange(size, dtype="float32") for size in spatial_shape]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([axis.ravel() for axis in grid], axis=-1)


def key_coordinates(spatial_shape, pool_size=None):
    """`(M, rank)` float32 positions of the keys, in input cells.

    A key pooled from a window sits at the mean coordinate of the input
    cells the window covers. With `padding="same"` the windows start at
    `-(pad // 2)`, `pad = cells * pool - size`, so edge windows may cover
    fewer cells.
    """
    pools = normalize_pool_size(pool_size, len(spatial_shape))
    if pools is None:
        return query_coordinates(spatial_shape)
    grid = key_value_grid(spatial_shape, pools)
    centres = []
    for size, cells, pool in zip(spatial_shape, grid, pools, strict=True):
        start = np.arange(cells) * pool - (cells * pool - size) // 2
        first, last = np.maximum(start, 0), np.minimum(start + pool, size) - 1
        centres.append(((first + last) / 2.0).astype("float32"))
    mesh = np.meshgrid(*centres, indexing="ij")
    return np.stack([axis.ravel() for axis in mesh], axis=-1)


def pairwise_distances(query_positions, key_positions):
    """`(N, M)` float32 Euclidean distances between query and key positions
    (`query_coordinates`, `key_coordinates`), in input cells."""
    offsets = query_positions[:, None] - key_positions[None]
    return np.sqrt(np.sum(np.square(offsets), axis=-1)).astype("float32")
