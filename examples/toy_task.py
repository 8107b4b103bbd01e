"""The small model and data set shared by the distributed examples.

A fixed regression task (predict the mean of each map's centre) and a
model with a spectrally normalized `SelfAttention2D`, small enough to train
in seconds on a CPU. Every example builds the same model from the same
seed, so runs on different engines or process counts can be compared.
"""

import pathlib

import numpy as np

NUM_SAMPLES = 32
BATCH_SIZE = 8  # the global batch, split across replicas or processes
EPOCHS = 2
MAP_SHAPE = (12, 12, 3)
LEARNING_RATE = 0.1


def add_run_arguments(parser, init_timeout=False):
    """Adds the flags every multi-process example takes."""
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--output-dir", type=pathlib.Path, default=None)
    if init_timeout:
        parser.add_argument(
            "--init-timeout",
            type=int,
            default=300,
            help="seconds to wait for all processes to join before failing",
        )


def make_data():
    """Returns `(images, targets)`, the same arrays on every call."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(NUM_SAMPLES, *MAP_SHAPE)).astype("float32")
    targets = images[:, 4:8, 4:8].mean(axis=(1, 2, 3))[:, None]
    return images, targets


def process_shard(array, process_id, num_processes, batch_size=BATCH_SIZE):
    """This process's rows of every global batch, in batch order.

    Fitting the shard with `batch_size // num_processes` gives each process
    its slice of each global batch, so all processes together see the same
    global batches as one process fitting `array` with `batch_size`.
    """
    if batch_size % num_processes:
        raise ValueError(
            "The global batch must split evenly across processes. "
            f"Received: batch_size={batch_size}, "
            f"num_processes={num_processes}"
        )
    local = batch_size // num_processes
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
