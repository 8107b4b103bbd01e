"""Shared test set-up: one Keras backend per process (`KERAS_BACKEND`)."""

import os

import pytest

# torch first: importing it after TensorFlow can crash on some machines.
try:
    import torch  # noqa: F401

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
except ImportError:
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings  # noqa: E402

# The project's hypothesis profile (DESIGN.md): few examples, the same ones on
# every run, and no deadline since a new shape pays for tracing/compiling.
settings.register_profile(
    "conv_self_attention",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("conv_self_attention")

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with the default dtype policy and a fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def pytest_report_header(config):
    variable = os.environ.get("KERAS_BACKEND")
    return f"keras backend: {BACKEND} (KERAS_BACKEND={variable})"
