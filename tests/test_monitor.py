"""AttentionMonitor: when it measures, what History and the monitor keep,
on resume, with TensorBoard after it, and the plot of its values."""

import math

import keras
import numpy as np
import pytest

import conv_self_attention
from conv_self_attention import AttentionMonitor
from conv_self_attention import SelfAttention2D
from conv_self_attention import attention_statistics
from conv_self_attention import diagnostics

KEY = "attention/att/entropy"


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 8))
    x = SelfAttention2D(num_heads=2, gamma=0.5, name="att")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 8)).astype("float32")
    return x, np.ones((8, 1), "float32")


def _measured(values):
    return [not math.isnan(value) for value in values]


def test_measures_before_training_every_and_at_the_last_epoch():
    model, (x, y) = _model(), _data()
    before = attention_statistics(model, x[:4])["att"]
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    monitor = AttentionMonitor(x[:4], every=2)
    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[monitor, Recorder()])
    assert len(history.history["loss"]) == 3
    assert _measured(history.history[KEY]) == [False, True, True]
    assert monitor.epochs == [0, 2, 3]
    assert monitor.history[KEY][0] == pytest.approx(before["entropy"])
    assert monitor.history[KEY][1:] == [history.history[KEY][1],
                                        history.history[KEY][2]]
    assert monitor.sample_sizes == {"att": 16}
    assert "attention/att/query_dependence" in seen[-1]
    final = attention_statistics(model, x[:4])["att"]
    for name in diagnostics.STATISTICS:
        assert history.history[f"attention/att/{name}"][-1] == (
            pytest.approx(final[name], rel=1e-5, abs=1e-6))


def test_resumed_fit_keeps_one_entry_per_epoch_on_the_right_epochs():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    model, (x, y) = _model(), _data()
    monitor = AttentionMonitor(x[:4], every=2)
    history = model.fit(x, y, initial_epoch=1, epochs=4, verbose=0,
                        callbacks=[monitor])
    assert history.epoch == [1, 2, 3]
    for key, values in history.history.items():
        assert len(values) == 3, key
    # Epochs 2 and 4 (of every=2), the last one, and before epoch 2.
    assert _measured(history.history[KEY]) == [True, False, True]
    assert monitor.epochs == [1, 2, 4]
    for source, epochs in ((monitor, [1, 2, 4]), (history, [2, 4]),
                           (history.history, [1, 3])):
        figure = conv_self_attention.plot_attention_statistics(source)
        panel = next(axis for axis in figure.axes
                     if axis.get_title() == "entropy")
        assert list(panel.lines[0].get_xdata()) == epochs
        plt.close(figure)


def test_tensorboard_after_the_monitor_records_the_statistics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator

    model, (x, y) = _model(), _data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[
        AttentionMonitor(x[:4]),
        keras.callbacks.TensorBoard(log_dir=str(tmp_path)),
    ])
    events = event_accumulator.EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
    assert f"epoch_{KEY}" in tags


class _Interrupt(keras.callbacks.Callback):
    """Stops `fit` at the end of `epoch`, as a killed process would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def _interrupted_then_resumed(backup_dir, monitor_first):
    x, y = _data()

    def callbacks(monitor):
        backup = keras.callbacks.BackupAndRestore(str(backup_dir))
        return [monitor, backup] if monitor_first else [backup, monitor]

    interrupted = AttentionMonitor(x[:4])
    with pytest.raises(RuntimeError, match="interrupted"):
        _model().fit(x, y, epochs=4, verbose=0,
                     callbacks=[*callbacks(interrupted), _Interrupt(1)])
    # A restarted process builds a fresh model; the backup restores it.
    resumed = AttentionMonitor(x[:4])
    _model().fit(x, y, epochs=4, verbose=0, callbacks=callbacks(resumed))
    return interrupted, resumed


def test_backup_and_restore_before_or_after_gives_the_same_history(
        tmp_path):
    gamma = "attention/att/gamma"
    fresh = attention_statistics(_model(), _data()[0][:4])["att"]["gamma"]
    runs = {order: _interrupted_then_resumed(tmp_path / str(order), order)
            for order in (True, False)}
    for interrupted, resumed in runs.values():
        assert interrupted.epochs == [0, 1, 2]
        # Measured after the backup was restored, not on the fresh model.
        assert resumed.epochs == [2, 3, 4]
        assert resumed.history[gamma][0] == pytest.approx(
            interrupted.history[gamma][-1], rel=1e-6)
        assert resumed.history[gamma][0] != pytest.approx(fresh)
    first, second = (resumed.history for _, resumed in runs.values())
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-6)


def test_the_plot_draws_the_uniform_baselines():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    model, (x, y) = _model(), _data()
    monitor = AttentionMonitor(x[:4])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    figure = conv_self_attention.plot_attention_statistics(monitor)
    panels = {axis.get_title(): axis for axis in figure.axes}
    for name, baseline in diagnostics.BASELINES.items():
        trained, uniform = panels[name].lines
        assert uniform.get_linestyle() == "--"
        np.testing.assert_allclose(
            uniform.get_ydata(), monitor.history[f"attention/att/{baseline}"])
    assert set(panels) == set(diagnostics.STATISTICS)
    plt.close(figure)
