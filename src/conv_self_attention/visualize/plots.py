"""Figures: attention maps over an image, and attention statistics.

Plotting needs matplotlib (the package's `viz` extra: `pip install
".[jax,viz]"` from a clone; `pip install "conv-self-attention[viz]"` once
the package is published); it is imported only when a plot is drawn.
"""

import keras
import numpy as np

from conv_self_attention.checks import positive_int

# From the modules, not the package: `diagnostics` exports these plots.
from conv_self_attention.diagnostics.callbacks import AttentionMonitor
from conv_self_attention.diagnostics.statistics import BASELINES
from conv_self_attention.diagnostics.statistics import STATISTICS
from conv_self_attention.diagnostics.statistics import attention_distances
from conv_self_attention.visualize.maps import _resolve_grid
from conv_self_attention.visualize.maps import attention_maps
from conv_self_attention.visualize.maps import upsample_attention_map


def _pyplot():
    """`matplotlib.pyplot`, or an error that names the extra to install."""
    try:
        import matplotlib.pyplot
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "Plotting needs matplotlib, from the package's `viz` extra: "
            'install it with your backend\'s extra, e.g. `pip install '
            '".[jax,viz]"` in the project\'s folder.',
            name=error.name,
        ) from error
    return matplotlib.pyplot


def plot_attention_maps(
    image,
    scores,
    queries,
    spatial_shape=None,
    pool_size=None,
    *,
    layer=None,
    sample=0,
    title=None,
    cmap="magma",
    alpha=0.65,
):
    """Draws, for each query, every head's attention map over the image.

    One row per query. The first column shows the image with the query
    marked; then one column per head shows the map (upsampled for pooled
    keys, see `upsample_attention_map`) overlaid on the image, with a
    colorbar of attention weights shared by the row. The image may be
    larger than the layer's input map (an intermediate layer): maps and
    markers are stretched onto the image.

    Args:
        image: array, `(height, width)`, `(height, width, 1)` or
            `(height, width, 3)` array: the picture to draw on.
        scores: array, `(batch, num_heads, N, M)` scores of a 2D layer.
        queries: list of tuples, list of `(row, col)` positions on the layer's
            input map.
        spatial_shape: tuple or None, `(rows, cols)` of the layer's input map.
            May be omitted when `layer` was called on a symbolic input.
        pool_size: int or tuple or None, the layer's `pool_size`. Taken from
            `layer` if given.
        layer: BaseSelfAttention or None, optional self-attention layer that
            produced `scores`.
        sample: int, which item of the batch to draw. Defaults to `0`.
        title: str or None, figure title. Defaults to a description of the maps.
        cmap: str, matplotlib colormap of the maps. Defaults to `"magma"`.
        alpha: float, opacity of the maps over the image. Defaults to `0.65`.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> from conv_self_attention import plot_attention_maps
    >>> layer = SelfAttention2D(num_heads=2, return_attention_scores=True)
    >>> image = np.random.default_rng(0).random((8, 8, 3)).astype("float32")
    >>> _, scores = layer(image[None])  # (1, 2, 64, 64)
    >>> figure = plot_attention_maps(
    ...     image, scores, queries=[(2, 2), (5, 6)], spatial_shape=(8, 8)
    ... )
    >>> figure.savefig("attention.png")
    ```
    """
    plt = _pyplot()

    spatial_shape, pool_size = _resolve_grid(spatial_shape, pool_size, layer)
    if len(spatial_shape) != 2:
        raise ValueError(
            "`plot_attention_maps` draws 2D maps only. Received: "
            f"spatial_shape={spatial_shape}"
        )
    image = _as_image(image)
    queries = [tuple(query) for query in queries]
    if not queries:
        raise ValueError(
            "`queries` must name at least one position. Received: queries=[]"
        )
    maps = [
        attention_maps(scores, spatial_shape, pool_size, query=query)[sample]
        for query in queries
    ]
    heads = maps[0].shape[0]
    figure, axes = plt.subplots(
        len(queries),
        heads + 1,
        figsize=(2.6 * (heads + 1) + 0.8, 2.5 * len(queries)),
        squeeze=False,
        constrained_layout=True,
    )
    for row, (query, query_maps) in enumerate(zip(queries, maps, strict=True)):
        upsampled = upsample_attention_map(query_maps, spatial_shape, pool_size)
        _draw_query_row(
            axes[row], image, query, upsampled, spatial_shape, cmap, alpha
        )
    if title is None:
        title = (
            f"Attention of {heads} head(s) on a {spatial_shape[0]}x"
            f"{spatial_shape[1]} map (pool_size={pool_size})"
        )
    figure.suptitle(title)
    return figure


def _draw_query_row(axes, image, query, maps, spatial_shape, cmap, alpha):
    """One row of `plot_attention_maps`: the image, then one map per head."""
    height, width = image.shape[:2]
    # Maps and markers live on the layer's grid; `extent` stretches them
    # over the image's pixels, whatever its resolution.
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    marker_y = (query[0] + 0.5) * height / spatial_shape[0] - 0.5
    marker_x = (query[1] + 0.5) * width / spatial_shape[1] - 0.5
    image_kwargs = {"cmap": "gray", "extent": extent}
    axes[0].imshow(image, **image_kwargs)
    grid = "x".join(str(size) for size in spatial_shape)
    axes[0].set_title(f"query {query} on the {grid} map", fontsize=10)
    axes[0].set_ylabel("row")
    # One color scale per row, spanning its maps: nearly uniform attention
    # still shows its structure, and the colorbar gives the true values.
    vmin, vmax = float(maps.min()), float(maps.max())
    for head, axis in enumerate(axes[1:]):
        axis.imshow(image, **image_kwargs)
        artist = axis.imshow(
            maps[head], cmap=cmap, alpha=alpha, vmin=vmin,
            vmax=max(vmax, vmin + 1e-9), extent=extent,
            interpolation="nearest",
        )
        axis.set_title(f"head {head}")
    for axis in axes:
        axis.plot(marker_x, marker_y, marker="x", color="cyan", ms=9, mew=2)
        axis.set_xlabel("column")
    colorbar = axes[0].figure.colorbar(artist, ax=list(axes[1:]), shrink=0.9)
    colorbar.set_label("attention weight")


def _as_image(image):
    image = np.asarray(keras.ops.convert_to_numpy(image), dtype="float32")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(
            "`image` must have shape (height, width), (height, width, 1) or "
            f"(height, width, 3). Received: image.shape={image.shape}"
        )
    if image.ndim == 3:
        # RGB needs [0, 1]; rescale whatever range the model used.
        low, high = float(image.min()), float(image.max())
        image = (image - low) / ((high - low) or 1.0)
    return image


def plot_attention_statistics(history, prefix="attention/", title=None):
    """Draws each attention layer's statistics over the epochs.

    One panel per statistic (see `attention_statistics`), one line per
    layer; per-head values, when logged, are thin lines. Where the
    uniform-attention baseline of a statistic was logged (`contribution`,
    `mean_distance`, `local_mass`), it is drawn dashed in the layer's
    color: a statistic on its baseline is what uniform attention gives.
    Given the `AttentionMonitor` itself, the points are its measurements,
    the one before training (epoch 0) included. Given a `History`, they
    are placed on the epochs it ran (`history.epoch`, so a resumed run starts
    at its `initial_epoch`); epochs logged as `nan` (between two
    measurements) are left out.

    Args:
        history: AttentionMonitor or History or dict, the `AttentionMonitor`,
            the `History` returned by `fit`, or a `History`'s `.history` dict
            (epochs counted from 1).
        prefix: str, the prefix of the keys `AttentionMonitor` writes. Defaults
            to `"attention/"`.
        title: str or None, figure title. Defaults to a description of the
            figure.

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        ValueError: if `history` has no key starting with `prefix`.

    Example:

    ```python
    >>> from conv_self_attention import plot_attention_statistics
    >>> logs = {  # what AttentionMonitor logs for a layer named "attention"
    ...     "attention/attention/entropy": [0.95, 0.90, 0.84],
    ...     "attention/attention/gamma": [0.0, 0.05, 0.12],
    ... }
    >>> figure = plot_attention_statistics(logs)
    >>> len(figure.axes)  # one panel per statistic
    2
    ```
    """
    plt = _pyplot()

    series, epochs = _series_and_epochs(history)
    lines = _statistic_lines(series, prefix)
    if not lines:
        raise ValueError(
            f"`history` has no `{prefix}...` keys: train with "
            f"`AttentionMonitor`. Received keys: {sorted(series)}"
        )
    names = [name for name in STATISTICS if name in lines]
    # Two columns: a docs page (about 700 px wide) shows the figure at
    # nearly its own size, so the labels stay legible.
    columns = min(2, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.8 * columns, 3.2 * rows), squeeze=False,
        constrained_layout=True,
    )
    for axis, name in zip(axes.flat, names, strict=False):
        for (path, head), values in sorted(
            lines[name].items(), key=lambda item: _line_order(*item[0])
        ):
            values = np.asarray(values, dtype="float64")
            shown = np.isfinite(values)
            x = epochs[: len(values)][shown]
            if head is None:
                line, = axis.plot(x, values[shown], marker="o", ms=3,
                                  label=path)
                _draw_baseline(axis, lines, name, path, epochs,
                               line.get_color())
            else:
                axis.plot(x, values[shown], lw=0.8, alpha=0.6,
                          label=f"{path} head {head}")
        axis.set_title(name)
        axis.set_xlabel("epochs completed")
    for axis in axes.flat[len(names):]:
        axis.remove()
    axes[0][0].legend(fontsize=9)
    figure.suptitle(title or "Attention statistics per epoch")
    return figure


def _draw_baseline(axis, lines, name, path, epochs, color):
    """The uniform-attention value of `name` for `path`, dashed."""
    values = lines.get(BASELINES.get(name), {}).get((path, None))
    if values is None:
        return
    values = np.asarray(values, dtype="float64")
    shown = np.isfinite(values)
    axis.plot(epochs[: len(values)][shown], values[shown], ls="--", lw=1,
              color=color, label=f"{path}, uniform attention")


def _series_and_epochs(history):
    """`({key: values}, epochs of the values)` from what was passed."""
    if isinstance(history, AttentionMonitor):
        return history.history, np.asarray(history.epochs)
    series = getattr(history, "history", history)
    length = max((len(values) for values in series.values()), default=0)
    # `History.epoch` holds the 0-based epochs run; plot epochs completed.
    epoch = getattr(history, "epoch", None)
    if epoch is not None and len(epoch) == length:
        return series, np.asarray(epoch) + 1
    return series, np.arange(1, length + 1)


def _line_order(path, head):
    """Each layer's line, then its heads in order."""
    return path, head is not None, int(head or 0)


def _statistic_lines(series, prefix):
    """`{statistic: {(layer_path, head or None): values}}` from the logs."""
    lines = {}
    for key, values in series.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split("/")
        head = None
        if parts[-1].startswith("head_"):
            head = parts.pop()[len("head_"):]
        if len(parts) < 2:
            continue
        name, path = parts[-1], "/".join(parts[:-1])
        lines.setdefault(name, {})[(path, head)] = values
    return lines


def plot_attention_distance(layer, inputs, *, bins=20, sample_size=None,
                            seed=0, title=None):
    """Where the attention mass goes, by distance, against uniform attention.

    Draws the share of attention at each query-key distance (in input
    cells, as in `attention_statistics`), over the evaluated queries, the
    examples and the heads, next to the share a uniform attention (every
    key `1 / M`) would give on the same grid. A curve left of the uniform
    one means attention stays local; right of it, it reaches far.

    Args:
        layer: BaseSelfAttention, a built self-attention layer.
        inputs: array, a batch that reaches `layer` (its own inputs).
        bins: int, number of distance bins. Defaults to `20`.
        sample_size: int or None, as in `attention_statistics`. Defaults to
            `None`.
        seed: int, seed of the query sample. Defaults to `0`.
        title: str or None, figure title. Defaults to the layer's name.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> from conv_self_attention import plot_attention_distance
    >>> layer = SelfAttention2D(pool_size=2)
    >>> inputs = np.random.default_rng(0).normal(size=(1, 6, 6, 8))
    >>> _ = layer(inputs.astype("float32"))  # builds the layer
    >>> figure = plot_attention_distance(layer, inputs.astype("float32"))
    >>> figure.axes[0].get_xlabel()
    'query-key distance (input cells)'
    ```
    """
    plt = _pyplot()

    bins = positive_int("bins", bins)
    distances, weights = attention_distances(
        layer, inputs, sample_size=sample_size, seed=seed
    )
    rows = len(distances)
    edges = np.linspace(0.0, max(float(distances.max()), 1.0), bins + 1)
    uniform = np.full(distances.shape, 1.0 / distances.shape[1])
    figure, axis = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for label, mass, style in (("trained attention", weights, "-"),
                               ("uniform attention", uniform, "--")):
        shares, _ = np.histogram(distances, edges, weights=mass / rows)
        mean = float(np.sum(distances * mass) / rows)
        axis.stairs(shares, edges, ls=style, lw=1.8,
                    label=f"{label} (mean {mean:.2f} cells)")
    axis.set_xlabel("query-key distance (input cells)")
    axis.set_ylabel("share of attention mass")
    axis.legend()
    axis.set_title(title or f"Attention distance of {layer.name!r} "
                   f"({rows} queries)", fontsize=10)
    return figure
