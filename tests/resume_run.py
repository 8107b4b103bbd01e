"""A small `fit` with `keras.callbacks.BackupAndRestore`, for
`test_resume.py`.

Run as a script (on the backend of `KERAS_BACKEND`), it fits the model and
writes the final state to `--output`. With `--kill-at EPOCH BATCH` it
SIGKILLs itself at that batch of that (0-based) epoch, unless the marker
file `--killed-marker` exists; it creates the marker first, so the
restarted run goes through. Every run appends the epochs it begins to
`--epoch-log`, so the test can tell a resumed run from a rerun.
"""

import argparse
import os
import pathlib
import signal

import keras
import numpy as np

from conv_self_attention import SelfAttention2D

EPOCHS = 3
BATCH_SIZE = 4
NUM_SAMPLES = 24  # 6 batches per epoch
MAP_SHAPE = (6, 6, 4)


def build_model():
    """A compiled model with fixed initial weights (the same in every
    process, whatever the random state)."""
    inputs = keras.Input(MAP_SHAPE)
    x = SelfAttention2D(
        filters=6, gamma=0.3, spectral_norm=True, name="attention"
    )(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    # Explicit names: state is compared by path with a model built in a
    # process where other tests' layers already took the default names.
    model = keras.Model(inputs, outputs, name="model")
    rng = np.random.default_rng(0)
    model.set_weights(
        [0.3 * rng.normal(size=w.shape) for w in model.get_weights()]
    )
    # Adam keeps per-weight state; a lost state would show after resuming.
    model.compile(keras.optimizers.Adam(0.01, name="adam"), loss="mse")
    return model


def make_data():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(NUM_SAMPLES, *MAP_SHAPE)).astype("float32")
    targets = images.mean(axis=(1, 2, 3))[:, None] * 3.0
    return images, targets


def fit(model, callbacks=()):
    images, targets = make_data()
    model.fit(
        images,
        targets,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,  # the same batches in every run
        verbose=0,
        callbacks=list(callbacks),
    )


def final_state(model):
    """Model variables by path (gamma and the spectral-norm vectors `u`
    included) and the optimizer's variables by position."""
    state = {f"model:{v.path}": v.numpy() for v in model.variables}
    for index, variable in enumerate(model.optimizer.variables):
        state[f"optimizer:{index}:{variable.path}"] = variable.numpy()
    return {key: np.asarray(value) for key, value in state.items()}


class EpochLog(keras.callbacks.Callback):
    """Appends every epoch this run begins to a file, as it begins."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_begin(self, epoch, logs=None):
        with open(self.path, "a") as log:
            log.write(f"{os.getpid()} {epoch}\n")


class KillOnce(keras.callbacks.Callback):
    """SIGKILLs this process at one batch of one epoch, the first time."""

    def __init__(self, epoch, batch, marker):
        super().__init__()
        self.kill_epoch = epoch
        self.kill_batch = batch
        self.marker = marker
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        due = (self.epoch, batch) == (self.kill_epoch, self.kill_batch)
        if due and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backup-dir", required=True)
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--epoch-log", type=pathlib.Path, required=True)
    parser.add_argument("--kill-at", type=int, nargs=2, required=True)
    parser.add_argument("--killed-marker", type=pathlib.Path, required=True)
    args = parser.parse_args()
    model = build_model()
    fit(
        model,
        [
            keras.callbacks.BackupAndRestore(
                args.backup_dir, save_freq="epoch"
            ),
            EpochLog(args.epoch_log),
            KillOnce(*args.kill_at, args.killed_marker),
        ],
    )
    np.savez(args.output, **final_state(model))


if __name__ == "__main__":
    main()
