"""The demo's data: digit images as float32 in [-1, 1], 16x16 by default.

`digits` is scikit-learn's embedded 8x8 digits set (no download),
upsampled. `mnist` is `keras.datasets.mnist`, used only when its file is
already cached, because `load_data` would otherwise download it.
"""

import dataclasses
import os

import numpy as np

RESOLUTION = 16
# MNIST is subsampled so that a run keeps the time budget of the digits.
MNIST_TRAIN_SIZE = 6000
MNIST_TEST_SIZE = 1000


@dataclasses.dataclass
class Dataset:
    """Images `(n, resolution, resolution, 1)` in [-1, 1] and int labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def resolution(self):
        return self.x_train.shape[1]

    def describe(self):
        return (
            f"{self.name} at {self.resolution}x{self.resolution} "
            f"({len(self.x_train)} train, {len(self.x_test)} held-out)"
        )


def load_dataset(name, resolution=RESOLUTION, seed=0):
    """Returns the `Dataset` called `name` (`"digits"` or `"mnist"`)."""
    if name == "digits":
        return load_digits(resolution, seed)
    if name == "mnist":
        return load_mnist(resolution, seed)
    raise ValueError(
        f"`name` must be 'digits' or 'mnist'. Received: name={name!r}"
    )


def load_digits(resolution=RESOLUTION, seed=0):
    """scikit-learn's 1797 digits: 75% train, 25% held out, stratified."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = digits.images.astype("float32") / 16.0  # Pixels are 0..16.
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=0.25,
        stratify=digits.target,
        random_state=seed,
    )
    return Dataset(
        "digits",
        _prepare(x_train, resolution),
        y_train.astype("int32"),
        _prepare(x_test, resolution),
        y_test.astype("int32"),
    )


def mnist_cache_path():
    """Where `keras.datasets.mnist.load_data()` looks for `mnist.npz`.

    Follows Keras' rule: `$KERAS_HOME`, else `~/.keras`, falling back to
    `/tmp/.keras` when the directory is not writable.
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(
            base if os.access(base, os.W_OK) else "/tmp", ".keras"
        )
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return os.path.join(home, "datasets", "mnist.npz")


def check_mnist_cached():
    """Raises `FileNotFoundError` with advice unless MNIST is cached."""
    path = mnist_cache_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--dataset mnist needs the MNIST file, which is not cached at "
            f"{path}. The demo does not download it. Fetch it once with "
            "`python -c \"import keras; keras.datasets.mnist.load_data()\"` "
            "on a machine with network access, or use the default "
            "--dataset digits."
        )
    return path


def load_mnist(resolution=RESOLUTION, seed=0):
    """A seeded subsample of cached MNIST, downscaled to `resolution`."""
    check_mnist_cached()
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    rng = np.random.default_rng(seed)
    train = rng.choice(len(x_train), MNIST_TRAIN_SIZE, replace=False)
    test = rng.choice(len(x_test), MNIST_TEST_SIZE, replace=False)
    return Dataset(
        "mnist",
        _prepare(x_train[train].astype("float32") / 255.0, resolution),
        y_train[train].astype("int32"),
        _prepare(x_test[test].astype("float32") / 255.0, resolution),
        y_test[test].astype("int32"),
    )


def _prepare(images, resolution):
    """`(n, h, w)` in [0, 1] to `(n, resolution, resolution, 1)` in [-1, 1]."""
    from scipy import ndimage

    factor = resolution / images.shape[1]
    resized = ndimage.zoom(images, (1, factor, factor), order=1)
    resized = np.clip(resized, 0.0, 1.0)
    return (resized[..., None] * 2.0 - 1.0).astype("float32")
