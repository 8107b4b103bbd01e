"""Which kernel a call ran (`layer.last_kernel`), and the clear error when
the flash kernel rejects its inputs."""

import re

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import to_numpy

from conv_self_attention import kernels
from conv_self_attention.kernels import IMPLEMENTATIONS
from conv_self_attention.kernels import chunked
from conv_self_attention.kernels import device
from conv_self_attention.kernels import plan as kernel_plan

H200 = (9, 0)


@pytest.mark.meta_device
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_last_kernel_is_the_kernel_that_ran(kernel_calls, implementation):
    from conv_self_attention import SelfAttention2D

    x = np.random.default_rng(0).normal(size=(2, 6, 6, 16))
    layer = SelfAttention2D(
        num_heads=2, attention_implementation=implementation, chunk_size=8
    )
    assert layer.last_kernel is None
    layer(x.astype("float32"))
    kernel_call = layer.last_kernel
    assert isinstance(kernel_call, kernels.KernelCall)
    assert kernel_call.device == device.find_device(keras.ops.zeros((1,)))
    assert [name for name, _ in kernel_calls] == [kernel_call.implementation]
    if implementation != "auto":
        assert kernel_call.implementation == implementation
    if kernel_call.implementation == "chunked":
        assert kernel_call.blocks == chunked.BlockPlan(8, False)
        assert kernel_calls[0][1]["plan"] == kernel_call.blocks
    else:
        assert kernel_call.chunk_size is None
    with pytest.raises(AttributeError):
        layer.last_kernel = None


def _wide_head_layer(implementation):
    """One head of 264 value channels: wider than any flash kernel takes."""
    from conv_self_attention import SelfAttention2D

    layer = SelfAttention2D(
        key_channels=8, value_channels=264, dtype="float16",
        attention_implementation=implementation,
    )
    layer.build((2, 4, 4, 16))
    return layer


def _compiled(layer):
    if BACKEND == "jax":
        import jax

        return jax.jit(layer)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(layer, jit_compile=True)
    return layer


@pytest.fixture
def on_hopper(monkeypatch):
    """The kernels plan for an H200, wherever this runs."""
    monkeypatch.setattr(
        kernel_plan, "find_device", lambda tensor: device.Device("gpu", H200)
    )


@pytest.mark.skipif(BACKEND == "tensorflow", reason="no flash kernel in TF")
def test_flash_rejection_raises_our_value_error(on_hopper, monkeypatch):
    """The flash path forced past its width limit: JAX's cuDNN rejects it
    (no cuDNN here, or a head too wide on a GPU); torch's SDPA is made to
    reject it as it does on CUDA ("No available kernel"), since its CPU
    kernel takes any width."""
    monkeypatch.setattr(kernel_plan, "flash_eligible", lambda **_: True)
    if BACKEND == "torch":
        import torch

        def no_kernel(*args, **kwargs):
            raise RuntimeError("No available kernel. Aborting execution.")

        monkeypatch.setattr(
            torch.nn.functional, "scaled_dot_product_attention", no_kernel
        )
    layer = _wide_head_layer("fused")
    x = np.ones((2, 4, 4, 16), "float32")
    with pytest.raises(ValueError) as error:
        _compiled(layer)(x)
    message = str(error.value)
    suggestion = 'attention_implementation="auto"'
    for part in ("`fused`", "platform='gpu'", "float16", suggestion):
        assert part in message
    # The backend's reason, in our words' company.
    reason = "cuDNN|head dim" if BACKEND == "jax" else "No available kernel"
    assert re.search(reason, message)


def test_auto_avoids_what_the_flash_kernel_rejects(on_hopper):
    """The same layer under `auto` runs a kernel that takes it; TF's
    `fused` never feeds the compute dtype to a flash kernel."""
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 16)).astype("float32")
    layer = _wide_head_layer("auto")
    out = _compiled(layer)(x)
    # A small map on a GPU: `dense` (torch, JAX); TF on a GPU: `chunked`.
    expected = "chunked" if BACKEND == "tensorflow" else "dense"
    assert layer.last_kernel.implementation == expected
    assert np.isfinite(to_numpy(out)).all()
    if BACKEND == "tensorflow":
        layer = _wide_head_layer("fused")
        out = _compiled(layer)(x)
        assert layer.last_kernel[:3] == ("fused", None, False)
        assert np.isfinite(to_numpy(out)).all()
