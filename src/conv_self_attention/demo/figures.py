"""The demo's figures, drawn off-screen with matplotlib and saved as PNG."""

import matplotlib

matplotlib.use("Agg")  # The demo runs headless; nothing is shown.

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from conv_self_attention import visualize  # noqa: E402

DPI = 110


def save(figure, path):
    """Saves `figure` to `path` and frees it; returns `path`."""
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def sample_grid(images, path, title, columns=8):
    """Saves images `(n, h, w, 1)` in [-1, 1] as one titled grid."""
    count, height, width = images.shape[:3]
    rows = -(-count // columns)
    # Mid-gray 1-pixel gutters keep the black backgrounds apart.
    canvas = np.zeros((rows * (height + 1) + 1, columns * (width + 1) + 1))
    for index, image in enumerate(images[..., 0]):
        top = 1 + (index // columns) * (height + 1)
        left = 1 + (index % columns) * (width + 1)
        canvas[top : top + height, left : left + width] = image
    figure, axis = plt.subplots(
        figsize=(columns * 0.5 + 1.6, rows * 0.5 + 0.6),
        constrained_layout=True,
    )
    artist = axis.imshow(canvas, cmap="gray", vmin=-1.0, vmax=1.0)
    axis.set_title(title)
    axis.set_axis_off()
    figure.colorbar(artist, ax=axis, shrink=0.8, label="pixel value")
    return save(figure, path)


def gan_losses(histories, path):
    """Per-step D and G hinge losses of each GAN, smoothed over 20 steps."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for label, history in histories.items():
        for axis, key in zip(axes, ("d_loss", "g_loss"), strict=True):
            values = np.asarray(history[key])
            axis.plot(values, alpha=0.25)
            axis.plot(_moving_average(values, 20), label=label,
                      color=axis.lines[-1].get_color())
    for axis, name in zip(axes, ("Discriminator", "Generator"), strict=True):
        axis.set_title(f"{name} hinge loss (line: mean of 20 steps)")
        axis.set_xlabel("training step (one D step + one G step)")
        axis.set_ylabel("loss")
        axis.legend()
    return save(figure, path)


def gamma_curves(series, path, title):
    """Gamma per epoch, one line per attention layer."""
    figure, axis = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for label, values in series.items():
        epochs = np.arange(1, len(values) + 1)
        axis.plot(epochs, values, marker="o", ms=3, label=label)
    axis.axhline(0.0, color="gray", lw=0.8, ls="--")
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.set_ylabel("gamma (weight of the attention branch)")
    axis.legend()
    return save(figure, path)


def classifier_curves(results, labels, path):
    """Held-out accuracy and gamma per epoch: mean over seeds, with range."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    keys = ("val_accuracy", "attention/attention/gamma")
    for place, runs in results.items():
        for axis, key in zip(axes, keys, strict=True):
            if key not in runs[0]["history"]:
                continue
            values = np.array([run["history"][key] for run in runs])
            epochs = np.arange(1, values.shape[1] + 1)
            axis.plot(epochs, values.mean(0), marker="o", ms=3,
                      label=labels[place])
            axis.fill_between(epochs, values.min(0), values.max(0),
                              alpha=0.2, color=axis.lines[-1].get_color())
    seeds = len(next(iter(results.values())))
    axes[0].set_title(f"Held-out accuracy (mean and range of {seeds} seeds)")
    axes[0].set_ylabel("accuracy")
    axes[1].set_title("gamma of the attention layer")
    axes[1].set_ylabel("gamma")
    axes[1].axhline(0.0, color="gray", lw=0.8, ls="--")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.legend()
    return save(figure, path)


def statistics_figure(history, path, title):
    """Attention statistics per epoch, from an `AttentionMonitor` or a
    history of its keys."""
    return save(visualize.plot_attention_statistics(history, title=title), path)


def distance_figure(model, inputs, path, title):
    """Attention distance of `model`'s layer `"attention"`, on what reaches
    it from `inputs`, against uniform attention."""
    layer = model.get_layer("attention")
    reaching = keras.Model(model.inputs, layer.input)
    figure = visualize.plot_attention_distance(
        layer, reaching.predict(inputs, verbose=0), title=title
    )
    return save(figure, path)


def attention_figure(image, scores, layer, spatial_shape, path, title):
    """Attention maps of three automatically chosen queries over `image`."""
    queries = pick_queries(image, spatial_shape)
    figure = visualize.plot_attention_maps(
        image, scores, queries, spatial_shape, layer=layer, title=title
    )
    return save(figure, path)


def pick_queries(image, spatial_shape):
    """Three queries on the layer's grid: top and bottom of the stroke, and
    the background cell nearest the centre (e.g. inside a loop)."""
    cells = _block_mean(np.asarray(image)[..., 0], spatial_shape)
    stroke = np.argwhere(cells > cells.mean())
    background = np.argwhere(cells <= cells.mean())
    centre = (np.asarray(spatial_shape) - 1) / 2.0
    nearest = background[np.argmin(np.sum((background - centre) ** 2, 1))]
    return [tuple(int(i) for i in q) for q in (stroke[0], stroke[-1], nearest)]


def _block_mean(image, spatial_shape):
    """Averages the image over the pixels of each cell of the grid."""
    grid_rows, grid_cols = spatial_shape
    rows, cols = image.shape[0] // grid_rows, image.shape[1] // grid_cols
    trimmed = image[: rows * grid_rows, : cols * grid_cols]
    blocks = trimmed.reshape(grid_rows, rows, grid_cols, cols)
    return blocks.mean(axis=(1, 3))


def _moving_average(values, window):
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")
