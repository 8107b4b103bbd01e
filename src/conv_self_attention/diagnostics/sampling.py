"""Which query positions the statistics evaluate, and in what blocks.

Pure functions of sizes: they decide the work, and hold no tensors.
"""

import collections

import numpy as np

from conv_self_attention.checks import non_negative_int
from conv_self_attention.checks import pool_size as normalize_pool_size
from conv_self_attention.checks import positive_int
from conv_self_attention.layers import key_value_grid

# Most bytes the statistics' arrays take at once (see `plan_query_sample`).
MAX_BYTES = 256 * 2**20
# Queries evaluated for entropy, distance, local mass and query dependence
# when `sample_size` is not given: every query of a map up to 32x32.
AUTO_SAMPLE_SIZE = 1024
# Float32 arrays of one block's `(examples, heads, queries, keys)` logits
# alive at once: the logits, their shifted copy, the exponentials or
# probabilities, one product or difference and its absolute value, and
# one temporary a backend may make (a transposed or broadcast operand).
BLOCK_ARRAYS = 6
# `(queries, keys)` matrices per block, in float32 sizes: the distances
# and their temporaries (3), the local keys as int64 window offsets and
# their absolute values (4), and the two as tensors (1 + 1 with the bool).
QUERY_KEY_ARRAYS = 9
FLOAT32_BYTES = 4
QueryPlan = collections.namedtuple(
    "QueryPlan",
    ["num_sampled", "examples_per_step", "queries_per_step", "step_bytes"],
)


def plan_query_sample(
    num_examples, num_heads, num_queries, num_keys, *, sample_size=None,
    max_bytes=MAX_BYTES, example_floats=0, row_floats=0,
):
    """Decides how many queries to evaluate and how to block the work.

    A pure function. The sample size does not depend on the memory budget:
    `sample_size`, capped at `num_queries`, or else all queries up to
    `AUTO_SAMPLE_SIZE` (1024) and that many beyond. The budget only sets
    the blocks: one step of `e` examples and `n` queries holds

    ```
    4 bytes * (e * example_floats
               + e * n * (BLOCK_ARRAYS * num_heads * num_keys + row_floats)
               + n * QUERY_KEY_ARRAYS * num_keys)
    ```

    which is at most `max_bytes` (`step_bytes` in the result). The caller
    counts in `example_floats` what it holds per example for the whole
    step (its projections) and in `row_floats` what it holds per example
    and query besides the logits (attended values, outputs).

    Args:
        num_examples: batch size `B`.
        num_heads: attention heads `h`.
        num_queries: query positions `N`.
        num_keys: key positions `M`.
        sample_size: `None` or a positive int.
        max_bytes: most bytes held at once. Defaults to `MAX_BYTES`
            (256 MiB).
        example_floats: float32 values held per example. Defaults to `0`.
        row_floats: float32 values held per example and query besides the
            `BLOCK_ARRAYS` logit-sized arrays. Defaults to `0`.

    Returns:
        A `QueryPlan(num_sampled, examples_per_step, queries_per_step,
        step_bytes)`.

    Raises:
        ValueError: if an argument is not a positive int (a non-negative
            one for the float counts), or one example with one query does
            not fit in `max_bytes`.

    Example:

    ```python
    >>> plan = plan_query_sample(8, 2, 4096, 4096, max_bytes=2**28)
    >>> plan.num_sampled, plan.examples_per_step, plan.queries_per_step
    (1024, 8, 156)
    ```
    """
    for name, value in (("num_examples", num_examples),
                        ("num_heads", num_heads),
                        ("num_queries", num_queries),
                        ("num_keys", num_keys),
                        ("max_bytes", max_bytes)):
        positive_int(name, value)
    sample_size = positive_int("sample_size", sample_size, allow_none=True)
    non_negative_int("example_floats", example_floats)
    non_negative_int("row_floats", row_floats)
    num_sampled = min(sample_size or AUTO_SAMPLE_SIZE, num_queries)
    per_row = BLOCK_ARRAYS * num_heads * num_keys + row_floats

    def step_bytes(examples, queries):
        return FLOAT32_BYTES * (
            examples * example_floats + examples * queries * per_row
            + queries * QUERY_KEY_ARRAYS * num_keys
        )

    if step_bytes(1, 1) > max_bytes:
        raise ValueError(
            f"One example with one query needs {step_bytes(1, 1)} bytes "
            "(its projections and one row of logits per head), more than "
            f"`max_bytes`. Received: max_bytes={max_bytes}"
        )
    examples = num_examples
    while step_bytes(examples, 1) > max_bytes:
        examples = max(1, examples // 2)
    free = max_bytes - FLOAT32_BYTES * examples * example_floats
    per_query = FLOAT32_BYTES * (examples * per_row
                                 + QUERY_KEY_ARRAYS * num_keys)
    queries = min(num_queries, free // per_query)
    return QueryPlan(num_sampled, examples, int(queries),
                     step_bytes(examples, queries))


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


def _window_starts(spatial_shape, pools):
    """Per axis, the first input cell of each pooling window (may be < 0).

    With `padding="same"` the windows start at `-(pad // 2)`,
    `pad = cells * pool - size`.
    """
    grid = key_value_grid(spatial_shape, pools)
    return [
        np.arange(cells) * pool - (cells * pool - size) // 2
        for size, cells, pool in zip(spatial_shape, grid, pools, strict=True)
    ]


def key_coordinates(spatial_shape, pool_size=None):
    """`(M, rank)` float32 positions of the keys, in input cells.

    A key pooled from a window sits at the mean coordinate of the input
    cells the window covers; with `padding="same"` edge windows may cover
    fewer cells.
    """
    pools = normalize_pool_size(pool_size, len(spatial_shape))
    if pools is None:
        return query_coordinates(spatial_shape)
    centres = []
    for size, start, pool in zip(
        spatial_shape, _window_starts(spatial_shape, pools), pools,
        strict=True,
    ):
        first, last = np.maximum(start, 0), np.minimum(start + pool, size) - 1
        centres.append(((first + last) / 2.0).astype("float32"))
    mesh = np.meshgrid(*centres, indexing="ij")
    return np.stack([axis.ravel() for axis in mesh], axis=-1)


def local_keys(spatial_shape, pool_size=None, query_rows=None):
    """`(n, M)` bool: which keys are local to each query.

    A key is local to a query when its pooling window is the window that
    contains the query or a neighbouring one (window indices differing by
    at most 1 on every axis). Without pooling, windows are single cells:
    the keys within one cell of the query (Chebyshev distance <= 1).
    Perfectly local attention therefore has a local mass of 1 at every
    pool size.

    Args:
        spatial_shape: the spatial sizes of the input map.
        pool_size: the layer's `pool_size`. Defaults to `None`.
        query_rows: row-major indices of the queries. Defaults to all.

    Returns:
        A boolean NumPy array, one row per query, one column per key.
    """
    rank = len(spatial_shape)
    pools = normalize_pool_size(pool_size, rank) or (1,) * rank
    starts = _window_starts(spatial_shape, pools)
    cells = _cells(spatial_shape, query_rows)
    key_windows = _cells([len(start) for start in starts])
    local = True
    # Axis by axis, so that no `(n, M, rank)` array is made.
    for axis, (start, pool) in enumerate(zip(starts, pools, strict=True)):
        window = (cells[:, axis] - start[0]) // pool
        local = local & (
            np.abs(window[:, None] - key_windows[None, :, axis]) <= 1)
    return local


def _cells(spatial_shape, rows=None):
    """`(n, rank)` int coordinates of the cells `rows` (default: all)."""
    indices = np.arange(int(np.prod(spatial_shape))) if rows is None else (
        np.asarray(rows))
    return np.stack(np.unravel_index(indices, tuple(spatial_shape)), axis=-1)


def pairwise_distances(query_positions, key_positions):
    """`(N, M)` float32 Euclidean distances between query and key positions
    (`query_coordinates`, `key_coordinates`), in input cells."""
    squares = 0.0
    # Axis by axis, so that no `(N, M, rank)` array is made.
    for axis in range(query_positions.shape[-1]):
        offsets = (query_positions[:, None, axis]
                   - key_positions[None, :, axis]).astype("float32")
        squares = squares + np.square(offsets)
    return np.sqrt(squares).astype("float32")
