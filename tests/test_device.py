"""`find_device` reports the device the computation runs on.

Device-aware tests ask the backend which device this machine has and
check that; pinned-CPU tests run on any machine; the GPU cases are
covered by patching the backend's device queries (pure set-ups).
"""

import collections
import os

import keras
import numpy as np
import pytest
from helpers import BACKEND

from conv_self_attention import kernels
from conv_self_attention.kernels import auto
from conv_self_attention.kernels import chunked
from conv_self_attention.kernels import device

HOPPER = device.Device("gpu", (9, 0))


def default_platform():
    """The backend's own answer: where an unpinned computation runs."""
    if BACKEND == "jax":
        import jax

        platform = jax.devices()[0].platform
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        platform = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    else:
        import torch

        # Keras' own rule for its torch device, accelerators beyond CUDA
        # aside; `meta` where `make test-meta` sets it.
        platform = os.environ.get("KERAS_TORCH_DEVICE") or (
            "gpu" if torch.cuda.is_available() else "cpu"
        )
    return "gpu" if platform == "cuda" else platform


@pytest.mark.meta_device
@pytest.mark.gpu_specific
def test_device_of_this_machine():
    found = device.find_device(keras.ops.zeros((1, 2, 1, 3)))
    assert found.platform == default_platform()
    if found.platform == "cpu":
        assert found.compute_capability is None
    # NumPy inputs are where Keras puts them.
    assert device.find_device(np.zeros((1, 2, 1, 3))) == found


def test_pinned_cpu_is_cpu_on_any_machine():
    if BACKEND == "jax":
        import jax

        with jax.default_device(jax.devices("cpu")[0]):
            traced = []
            jax.jit(lambda x: traced.append(device.find_device(x)) or x)(
                np.zeros(3)
            )
            assert traced == [device.CPU]
            assert device.find_device(keras.ops.zeros(3)) == device.CPU
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.device("/CPU:0"):
            assert device.find_device(keras.ops.zeros(3)) == device.CPU
    else:
        import torch

        with keras.device("cpu:0"):
            assert device.find_device(torch.zeros(3)) == device.CPU


def test_parse_device_name():
    assert device.parse_device_name("gpu:1") == ("gpu", 1)
    assert device.parse_device_name("cuda:0") == ("gpu", 0)
    assert device.parse_device_name("/GPU:1") == ("gpu", 1)
    assert device.parse_device_name(
        "/job:localhost/replica:0/task:0/device:CPU:0"
    ) == ("cpu", 0)
    assert device.parse_device_name("/device:TPU:3") == ("tpu", 3)
    assert device.parse_device_name("") == (None, 0)
    assert device.parse_capability("9.0") == (9, 0)
    assert device.parse_capability("gfx90a") is None


def test_rocm_and_unmeasured_devices_get_chunked():
    for backend in ("jax", "torch"):
        for platform in ("rocm", "mps", "xpu"):
            assert auto.select_implementation(
                backend=backend, platform=platform, compute_capability=None,
                dtype="float32", num_queries=64, num_keys=64, batch_heads=1,
                key_width=8, value_width=32,
            ) == "chunked"


FakeClient = collections.namedtuple("FakeClient", ["platform_version"])
FakeJaxDevice = collections.namedtuple(
    "FakeJaxDevice", ["platform", "compute_capability", "client"]
)


@pytest.fixture
def jax_gpu_host(monkeypatch):
    """JAX reporting a Hopper GPU as its default backend, its CPU kept."""
    import jax

    real_devices = jax.devices
    gpu = FakeJaxDevice("gpu", "9.0", FakeClient("cuda 12080"))

    def devices(backend=None):
        return [gpu] if backend in (None, "gpu") else real_devices(backend)

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "devices", devices)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX devices")
def test_jax_respects_default_device_and_distribution(jax_gpu_host):
    import jax

    def traced_device():
        found = []
        jax.jit(lambda x: found.append(device.find_device(x)) or x)(
            np.zeros(3)
        )
        return found[0]

    assert traced_device() == HOPPER
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        assert traced_device() == device.CPU
    with jax.default_device("cpu"):
        assert traced_device() == device.CPU
    distribution = keras.distribution.DataParallel(devices=["cpu:0"])
    with distribution.scope():
        assert traced_device() == device.CPU
    # A concrete array is where it lives.
    assert device.find_device(jax.device_put(np.zeros(3), cpu)) == device.CPU


@pytest.mark.skipif(BACKEND != "jax", reason="JAX devices")
def test_jax_rocm_gpu():
    rocm = FakeJaxDevice("gpu", None, FakeClient("rocm 6.3"))
    assert device._from_jax_device(rocm) == device.Device("rocm", None)
    cuda = FakeJaxDevice("gpu", "8.6", FakeClient("cuda 12080"))
    assert device._from_jax_device(cuda) == device.Device("gpu", (8, 6))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF device scopes")
def test_tensorflow_respects_device_scopes(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(
        tf.config, "list_logical_devices",
        lambda kind=None: ["/device:GPU:0"] if kind == "GPU" else [],
    )
    found = {}

    @tf.function
    def trace(x):
        found["unscoped"] = device.find_device(x * 2)
        with tf.device("/CPU:0"):
            found["cpu scope"] = device.find_device(x * 2)
        with tf.device("/GPU:0"):
            found["gpu scope"] = device.find_device(x * 2)
        return x

    trace(tf.zeros(3))
    assert found["unscoped"].platform == "gpu"
    assert found["cpu scope"] == device.CPU
    assert found["gpu scope"].platform == "gpu"
    # A function traced inside a scope runs there, though its ops carry
    # no device.
    with tf.device("/CPU:0"):
        trace(tf.zeros(4))
    assert found["unscoped"] == device.CPU


@pytest.mark.skipif(BACKEND != "torch", reason="torch devices")
def test_torch_devices(monkeypatch):
    import torch

    monkeypatch.setattr(device, "_torch_capability", lambda index: (9, 0))
    cuda = torch.device("cuda", 1)
    monkeypatch.setattr(torch.version, "hip", None)
    assert device._torch_device(cuda) == HOPPER
    monkeypatch.setattr(torch.version, "hip", "6.3")
    assert device._torch_device(cuda) == device.Device("rocm", None)
    assert device._torch_device(torch.device("mps")) == ("mps", None)


@pytest.mark.meta_device
@pytest.mark.skipif(BACKEND != "torch", reason="torch devices")
def test_torch_plans_for_the_device_keras_computes_on():
    """Keras' torch ops move inputs to Keras' device, so CPU tensors given
    while Keras computes elsewhere are planned for there (the `auto` rule,
    the chunk budget). `meta` stands in for a GPU: an accelerator nobody
    has measured, so `auto` runs `chunked`, in accelerator-sized blocks."""
    import torch

    batch, length = 2, 64 * 64
    shapes = ((batch, length, 1, 4),) * 2 + ((batch, length, 1, 8),)
    inputs = [torch.zeros(shape, device="cpu") for shape in shapes]
    with keras.device("meta"):
        kernel_call = kernels.plan_attention(*inputs)
        outputs = [
            kernels.attention(*inputs, scale=1.0, implementation=name)
            for name in kernels.IMPLEMENTATIONS
        ]
    assert kernel_call.device == device.Device("meta", None)
    plan = chunked.plan_blocks(length, length, batch, 1, "meta")
    assert kernel_call[:2] == ("chunked", plan)
    # Not the CPU's plan (cache-sized blocks: 256 queries here).
    assert plan != chunked.plan_blocks(length, length, batch, 1, "cpu")
    # Every kernel computes there, none meets a CPU input on the way.
    for out in outputs:
        assert out.device.type == "meta"
        assert tuple(out.shape) == shapes[2] and out.dtype == torch.float32


def test_static_size_reads_traced_sizes_as_ints():
    # What the plan and the fused kernel read widths and N through.
    assert device.static_size(7) == 7
    assert device.static_size(np.int64(7)) == 7
    assert device.static_size(None) is None
    if BACKEND != "torch":
        return
    import torch

    seen = []

    def scale_by_width(x):
        seen.append(x.shape[1])
        return x * device.static_size(x.shape[1])

    traced = torch.jit.trace(scale_by_width, torch.ones(1, 3))
    # The TorchScript tracer hands out a dimension as a 0-dim tensor; read
    # as an int it is a constant of the graph, not shape arithmetic.
    assert isinstance(seen[0], torch.Tensor)
    assert "aten::size" not in str(traced.graph)
    assert float(traced(torch.ones(1, 3))[0, 0]) == 3.0
