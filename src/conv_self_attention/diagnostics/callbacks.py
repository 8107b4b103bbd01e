"""Callbacks that log what the attention layers do, epoch by epoch."""

import math

import keras
from keras import ops

from conv_self_attention.checks import positive_int
from conv_self_attention.diagnostics.reaching import attention_layers
from conv_self_attention.diagnostics.sampling import MAX_BYTES
from conv_self_attention.diagnostics.statistics import attention_statistics
from conv_self_attention.diagnostics.statistics import checked_options


def gamma_values(model, prefix="gamma/"):
    """Returns `{prefix + path: gamma}` for each self-attention layer.

    Args:
        model: keras.Model, the model whose built self-attention layers
            (nested models included) are read.
        prefix: str, prefix of the keys. Defaults to `"gamma/"`.

    Returns:
        A dict from `prefix` + the layer's path (as in `attention_layers`)
        to its current `gamma`, a Python float.
    """
    return {
        f"{prefix}{path}": float(ops.convert_to_numpy(layer.gamma.value))
        for path, layer in attention_layers(model)
        if layer.built
    }


def flat_statistics(statistics, prefix="attention/"):
    """Flattens `attention_statistics`' result into log keys.

    Args:
        statistics: dict, `{layer path: {statistic: value}}`, as
            `attention_statistics` returns.
        prefix: str, prefix of the keys. Defaults to `"attention/"`.

    Returns:
        A dict `{prefix + "layer path/statistic": value}`, the keys
        `AttentionMonitor` logs.
    """
    return {
        f"{prefix}{path}/{name}": value
        for path, values in statistics.items()
        for name, value in values.items()
    }


@keras.saving.register_keras_serializable(package="conv_self_attention")
class GammaLogger(keras.callbacks.Callback):
    """Adds each self-attention layer's `gamma` to the epoch logs.

    `gamma` scales what attention adds to the layer's shortcut, and starts
    at 0 in SAGAN. It is cheap to log, but it does not say whether the
    model uses attention: only the product of `gamma` and the output
    projection matters, so a small `gamma` can carry a large signal and a
    large one a signal the next layers ignore. How large the added signal
    is is `contribution` (`AttentionMonitor`, `attention_statistics`);
    whether the predictions depend on it is `attention_ablation`. The
    values land in `History` (e.g.
    `history.history["gamma/self_attention2d"]`) and, when this callback is
    listed before `keras.callbacks.TensorBoard`, in TensorBoard.
    `AttentionMonitor` logs `gamma` too, with the other statistics.

    Args:
        prefix: str, prefix of the log keys. Defaults to `"gamma/"`.

    Example:

    ```python
    import keras
    import numpy as np
    from conv_self_attention import GammaLogger
    from conv_self_attention import SelfAttention2D

    inputs = keras.Input((8, 8, 4))
    hidden = SelfAttention2D(gamma=0.1, name="attention")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    x, y = np.random.rand(16, 8, 8, 4), np.random.rand(16, 1)
    history = model.fit(x, y, epochs=3, callbacks=[GammaLogger()], verbose=0)
    print(history.history["gamma/attention"])  # one value per epoch
    ```
    """

    def __init__(self, prefix="gamma/"):
        super().__init__()
        if not isinstance(prefix, str):
            raise TypeError(
                f"`prefix` must be a string. Received: prefix={prefix!r}"
            )
        self.prefix = prefix

    def on_epoch_end(self, epoch, logs=None):
        # Keras hands the same dict to every callback, so writing into it
        # is what makes the values reach History and TensorBoard.
        if logs is not None:
            logs.update(gamma_values(self.model, self.prefix))

    def get_config(self):
        return {"prefix": self.prefix}


class AttentionMonitor(keras.callbacks.Callback):
    """Logs `attention_statistics` of the model on fixed inputs.

    The statistics are measured once before training, then every `every`
    epochs and at the last epoch, whatever `every` is. Keys are
    `attention/<layer_path>/<statistic>` (e.g.
    `history.history["attention/self_attention2d/entropy"]`). They are
    written into the epoch `logs`, so they reach `History` and every
    callback listed after this one: list it before
    `keras.callbacks.TensorBoard` to see them there (TensorBoard needs the
    `tensorboard` package on every backend). Every epoch run logs every
    key, `nan` between two measurements, so each `History` list has one
    value per epoch run, also when `fit` resumes at `initial_epoch`. The
    model must be functional or Sequential.

    The measurements, the one before training included, are also kept on
    the monitor: `epochs` lists the number of epochs completed at each
    (0 before a first `fit`, `initial_epoch` before a resumed one),
    `history` the values, one list per key aligned with `epochs`, and
    `sample_sizes` the query sample of each layer.
    `plot_attention_statistics(monitor)` draws them.

    The "before training" measurement is taken when the first epoch
    begins, after every callback's `on_train_begin`: a
    `keras.callbacks.BackupAndRestore` listed before or after this monitor
    has restored the weights by then, so a resumed run measures the
    restored model, not a fresh one, in either order. A monitor lives in
    one process: after a restart it holds the resumed run's measurements
    only (the first at the restored epoch). To keep the whole series,
    list a `keras.callbacks.CSVLogger(path, append=True)` or a
    `keras.callbacks.TensorBoard` after the monitor: both receive the
    logged values every epoch and keep them across restarts.

    Args:
        inputs: array or structure, a fixed batch for the model (e.g. 64
            held-out examples).
        every: int, measure every `every` epochs (counted from the first epoch
            of training, so that a resumed run measures the same epochs).
            Defaults to `1`.
        per_head: bool, also log per-head values. Defaults to `False`.
        sample_size: int or None, as in `attention_statistics`. Defaults to
            `None`.
        seed: int, seed of the query sample. Defaults to `0`.

    Example:

    ```python
    import keras
    import numpy as np
    from conv_self_attention import AttentionMonitor
    from conv_self_attention import SelfAttention2D
    from conv_self_attention import plot_attention_statistics

    inputs = keras.Input((8, 8, 4))
    hidden = SelfAttention2D(gamma=0.1, name="attention")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    x, y = np.random.rand(80, 8, 8, 4), np.random.rand(80, 1)
    x_val = x[64:]  # fixed inputs the statistics are computed on
    monitor = AttentionMonitor(x_val)
    history = model.fit(x[:64], y[:64], epochs=3, callbacks=[monitor],
                        verbose=0)
    print(history.history["attention/attention/entropy"])
    plot_attention_statistics(monitor)  # before training, then each epoch
    ```
    """

    def __init__(self, inputs, every=1, per_head=False, sample_size=None,
                 seed=0):
        super().__init__()
        self.inputs = inputs
        self.every = positive_int("every", every)
        # Checked now rather than after the first epoch.
        self.options = checked_options(
            per_head=per_head, sample_size=sample_size, seed=seed,
            max_bytes=MAX_BYTES,
        )
        self.epochs = []
        self.history = {}
        self.sample_sizes = {}
        self._measure_first = False
        self._last_epoch = None

    def measure(self):
        """The flat `{log key: value}` of the model's statistics now."""
        statistics = attention_statistics(self.model, self.inputs,
                                          **self.options)
        self.sample_sizes = {path: values.sample_size
                             for path, values in statistics.items()}
        return flat_statistics(statistics)

    def on_train_begin(self, logs=None):
        self._measure_first = True
        self._last_epoch = self.params.get("epochs", 1) - 1

    def on_epoch_begin(self, epoch, logs=None):
        # Not in `on_train_begin`: callbacks listed after this one (e.g.
        # `BackupAndRestore`) may still change the weights in theirs.
        if self._measure_first:
            self._record(epoch, self.measure())
            self._measure_first = False

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch == self._last_epoch:
            values = self.measure()
            self._record(epoch + 1, values)
        else:
            values = {key: math.nan for key in self.history}
        if logs is not None:
            logs.update(values)

    def _record(self, epochs_done, values):
        self.epochs.append(epochs_done)
        for key in set(values) | set(self.history):
            # A key new since the last measurement is `nan` before it.
            series = self.history.setdefault(
                key, [math.nan] * (len(self.epochs) - 1))
            series.append(values.get(key, math.nan))
