"""Test set-up and fixtures only: one Keras backend per process
(`KERAS_BACKEND`), full float32 matmul precision on GPUs, the hypothesis
profile, the default dtype policy and seed for every test. Shared helper
functions live in `helpers.py`."""

import inspect
import os
import sys

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import settings

# No test process imports torch up front any more. It once came first in
# every pass ("importing it after TensorFlow can crash"), but TensorFlow
# 2.21 and torch 2.14 import and compute in either order (checked
# 2026-12-07), and loading torch's CUDA libraries first in the JAX pass
# would hide a cuDNN clash that JAX users without torch never meet. What
# still crashes is loading Triton (torch.compile, the dynamo exporters)
# after TensorFlow (the PyTorch guide's warning): only the torch pass
# does that, where Keras' torch backend loads it first. The `once` tests
# that use torch in the JAX pass import it themselves
# (`_full_float32_torch` then applies).

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

from helpers import BACKEND  # noqa: E402


def _full_float32_matmuls():
    """IEEE float32 matmuls and convolutions on every backend, so one
    float32 tolerance holds on CPUs and GPUs alike. By default GPUs of
    compute capability 8.0+ round float32 matmul inputs to TF32's 10-bit
    mantissa: JAX's default precision (measured 1.6-2.6e-2 off a float64
    reference on an H200), TensorFlow's TF32 switch, torch's cuDNN
    convolutions. No effect on CPUs."""
    _full_float32_torch()
    if BACKEND == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)


def _full_float32_torch():
    """The torch part of `_full_float32_matmuls`, wherever torch is loaded
    (by Keras in the torch pass, by a test module elsewhere)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


_full_float32_matmuls()


def pytest_runtest_setup(item):
    # A test module may have imported torch since (at collection).
    _full_float32_torch()


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


@pytest.fixture
def kernel_calls(monkeypatch):
    """Records each kernel `kernels.run_attention` runs: its name and its
    arguments by name, beyond the tensors (`scale`, `plan`, `flash`,
    `platform`, `exporting`, as each kernel takes them)."""
    from conv_self_attention import kernels

    calls = []
    for name in ("dense", "chunked", "fused"):
        original = getattr(kernels, f"{name}_attention")
        signature = inspect.signature(original)

        def recorder(*args, _name=name, _original=original,
                     _signature=signature, **kwargs):
            bound = _signature.bind(*args, **kwargs)
            bound.apply_defaults()
            options = {
                key: value for key, value in bound.arguments.items()
                if key not in ("query", "key", "value")
            }
            calls.append((_name, options))
            return _original(*args, **kwargs)

        monkeypatch.setattr(kernels, f"{name}_attention", recorder)
    return calls


def pytest_report_header(config):
    variable = os.environ.get("KERAS_BACKEND")
    return f"keras backend: {BACKEND} (KERAS_BACKEND={variable})"
