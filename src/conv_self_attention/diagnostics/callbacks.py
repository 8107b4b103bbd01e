"""Callbacks that log what the attention layers do, epoch by epoch."""

import math

import keras
from keras import ops

from conv_self_attention.checks import positive_int
from conv_self_attention.diagnostics.reaching import attention_layers
from conv_self_attention.diagnostics.statistics import attention_statistics


def gamma_values(model, prefix="gamma/"):
    """Returns `{prefix + path: gamma}` for each self-attention layer.

    `path` is as in `attention_layers`; values are python floats.
    """
    return {
        f"{prefix}{path}": float(ops.convert_to_numpy(layer.gamma.value))
        for path, layer in attention_layers(model)
        if layer.built
    }


def flat_statistics(statistics, prefix="attention/"):
    """`{layer: {stat: v}}` to `{prefix + "layer/stat": v}`."""
    return {
        f"{prefix}{path}/{name}": value
        for path, values in statistics.items()
        for name, value in values.items()
    }


@keras.saving.register_keras_serializable(package="conv_self_attention")
class GammaLogger(keras.callbacks.Callback):
    """Adds each self-attention layer's `gamma` to the epoch logs.

    `gamma` scales what attention adds to the layer's shortcut, and starts
    at 0 in SAGAN: its value is the simplest sign of whether a model uses
    attention at all. The values land in `History` (e.g.
    `history.history["gamma/self_attention2d"]`) and, when this callback is
    listed before `keras.callbacks.TensorBoard`, in TensorBoard.
    `AttentionMonitor` logs `gamma` too, with the statistics that say
    whether a gamma away from 0 means the attention is used.

    Args:
        prefix: prefix of the log keys. Defaults to `"gamma/"`.

    Example:

    ```python
    history = model.fit(x, y, epochs=3, callbacks=[GammaLogger()])
    print({k: v for k, v in history.history.items() if "gamma" in k})
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
    """Logs `attention_statistics` of the model on fixed inputs each epoch.

    Keys are `attention/<layer_path>/<statistic>` (e.g.
    `history.history["attention/self_attention2d/entropy"]`). They are
    written into the epoch `logs`, so they reach `History` and every
    callback listed after this one: list it before
    `keras.callbacks.TensorBoard` to see them there. Epochs between two
    measurements (with `every > 1`) log `nan`, so each `History` list has
    one value per epoch. The model must be functional or Sequential.

    Args:
        inputs: a fixed batch for the model (e.g. 64 held-out examples).
        every: measure every `every` epochs (the first epoch always).
            Defaults to `1`.
        per_head: also log per-head values. Defaults to `False`.
        sample_size: as in `attention_statistics`. Defaults to `None`.
        seed: seed of the query sample. Defaults to `0`.

    Example:

    ```python
    monitor = AttentionMonitor(x_val[:64])
    history = model.fit(x, y, epochs=5, callbacks=[monitor])
    plot_attention_statistics(history)
    ```
    """

    def __init__(self, inputs, every=1, per_head=False, sample_size=None,
                 seed=0):
        super().__init__()
        self.inputs = inputs
        self.every = positive_int("every", every)
        # Checked now rather than after the first epoch.
        sample_size = positive_int("sample_size", sample_size, allow_none=True)
        self.options = {"per_head": per_head, "sample_size": sample_size,
                        "seed": seed}
        self._keys = ()

    def measure(self):
        """The flat `{log key: value}` of the model's statistics now."""
        values = flat_statistics(
            attention_statistics(self.model, self.inputs, **self.options)
        )
        self._keys = tuple(values)
        return values

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if epoch % self.every == 0:
            logs.update(self.measure())
        else:
            logs.update({key: math.nan for key in self._keys})
