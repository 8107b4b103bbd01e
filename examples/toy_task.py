"""The small model and data set shared by the distributed examples, with
their common flags and checks.

A fixed regression task (predict the mean of each map's centre) and a
model with a spectrally normalized `SelfAttention2D`, small enough to train
in seconds on a CPU. Every example builds the same model from the same
seed, so runs on different engines or process counts can be compared.
"""

import pathlib
import socket
import sys
import time

import numpy as np

BATCH_SIZE = 8  # the default global batch, split across replicas or processes
BATCHES_PER_EPOCH = 4
EPOCHS = 2
MAP_SHAPE = (12, 12, 3)
LEARNING_RATE = 0.1


def add_run_arguments(parser, init_timeout=False):
    """Adds the flags every multi-process example takes."""
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--global-batch",
        type=int,
        default=BATCH_SIZE,
        help="samples per step over all processes and devices; must divide "
        "evenly over them",
    )
    parser.add_argument("--output-dir", type=pathlib.Path, default=None)
    if init_timeout:
        parser.add_argument(
            "--init-timeout",
            type=int,
            default=300,
            help="seconds to wait for all processes to join before failing",
        )


def local_batch(global_batch, count, what):
    """The batch each of `count` parts (`what`: "processes", "devices")
    gets; exits with one line naming the flag if it does not divide."""
    if global_batch < 1 or global_batch % count:
        sys.exit(
            f"--global-batch {global_batch} does not divide evenly over "
            f"{count} {what}: use a positive multiple of {count}"
        )
    return global_batch // count


def wait_for_coordinator(address, timeout, who):
    """Returns the seconds left of `timeout` once `address` (host:port)
    accepts a TCP connection; exits with a message naming it if it does
    not in time.

    The frameworks' own waits can end without naming the address (JAX
    aborts the process), so a worker probes first, with its own timeout
    and message, before importing a framework.
    """
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return deadline - time.monotonic()
        except OSError as error:
            if time.monotonic() >= deadline:
                sys.exit(
                    f"{who}: no coordinator answered at {address} within "
                    f"{timeout} s ({error})"
                )
            time.sleep(0.5)


def make_data(global_batch=BATCH_SIZE):
    """Returns `(images, targets)`: `BATCHES_PER_EPOCH` global batches,
    the same arrays on every call (the first rows do not depend on the
    batch)."""
    rng = np.random.default_rng(0)
    num_samples = BATCHES_PER_EPOCH * global_batch
    images = rng.normal(size=(num_samples, *MAP_SHAPE)).astype("float32")
    targets = images[:, 4:8, 4:8].mean(axis=(1, 2, 3))[:, None]
    return images, targets


def process_shard(array, process_id, num_processes, batch_size=BATCH_SIZE):
    """This process's rows of every global batch, in batch order.

    Fitting the shard with `batch_size // num_processes` gives each process
    its slice of each global batch, so all processes together see the same
    global batches as one process fitting `array` with `batch_size`.
    """
    local = local_batch(batch_size, num_processes, "processes")
    batches = array.reshape(-1, batch_size, *array.shape[1:])
    shard = batches[:, process_id * local : (process_id + 1) * local]
    return shard.reshape(-1, *array.shape[1:])


def build_model(spectral_norm=True, compile=True):
    """The model, with explicit layer names.

    Explicit names make weight paths (and torch `state_dict` keys) the same
    in every independently built copy, whatever was built before.
    """
    import keras

    from conv_self_attention import SelfAttention2D

    inputs = keras.Input(MAP_SHAPE, name="images")
    x = keras.layers.Conv2D(
        8, 3, padding="same", activation="relu", name="conv"
    )(inputs)
    x = SelfAttention2D(
        num_heads=2,
        pool_size=2,
        gamma=0.5,
        spectral_norm=spectral_norm,
        name="attention",
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    model = keras.Model(inputs, outputs, name="toy_model")
    if compile:
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    return model


def named_weights(model):
    """Every variable of `model` as `{path: NumPy array}`, the spectral
    norm's power-iteration vectors `u` included."""
    return {
        variable.path: np.asarray(variable.numpy())
        for variable in model.variables
    }


def as_lists(weights):
    """`{path: array}` as JSON-ready nested lists."""
    return {path: value.tolist() for path, value in weights.items()}
