"""The layer on a GPU, each test one body parametrised by device.

The `cpu` variant of every test runs everywhere (in CI, where it can fail
like any other test); the `gpu` variant runs where the backend has a CUDA
GPU (`benchmarks/gpu/run_gpu.sh` runs this file there for torch and JAX) and
is skipped, saying so, elsewhere (it fails where `nvidia-smi` lists a GPU
that a CUDA build of the backend does not find: `gpu_host.py`). What a
test expects follows the device it runs on: e.g. `auto` runs the
compute-dtype flash kernel under mixed precision on an NVIDIA GPU of
compute capability 8.0+ (torch, JAX) and the CPU rule on a CPU.
conftest.py sets full float32 matmul precision, so float32 tolerances
hold on both.
"""

import os

import gpu_host
import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import gradients
from reference import reference_rows
from reference import reference_self_attention
from reference import relative_error

from conv_self_attention import SelfAttention2D
from conv_self_attention.kernels import auto

# The `gpu` variants are what benchmarks/gpu/run_gpu.sh runs on a GPU host
# (`-m gpu_specific`); their `cpu` twins run in every pass.
DEVICES = ("cpu", pytest.param("gpu", marks=pytest.mark.gpu_specific))
FLASH_BACKENDS = ("torch", "jax")
to_numpy = keras.ops.convert_to_numpy


def gpu_capability():
    """`(major, minor)` of this backend's first CUDA GPU, or None when it
    has none."""
    if BACKEND == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        return tuple(torch.cuda.get_device_capability(0))
    if BACKEND == "jax":
        import jax

        try:
            gpu = jax.devices("gpu")[0]
        except RuntimeError:  # no GPU backend
            return None
        capability = getattr(gpu, "compute_capability", "0.0")
        return tuple(int(part) for part in str(capability).split("."))
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability", (0, 0)))


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs the test on this device (`keras.device`); the `gpu` variant
    is skipped where the backend has no CUDA GPU, and fails where
    `nvidia-smi` lists one that a CUDA build of the backend cannot see."""
    if request.param == "gpu" and gpu_capability() is None:
        gpu_host.skip_or_fail_without_gpu(BACKEND)
    with keras.device(f"{request.param}:0"):
        yield request.param


def flash_expected(device):
    """Whether `auto` and `fused` must feed a flash kernel the compute
    dtype on `device`: torch and JAX on NVIDIA GPUs of capability 8.0+."""
    if device != "gpu" or BACKEND not in FLASH_BACKENDS:
        return False
    return gpu_capability() >= auto.FLASH_MIN_CAPABILITY


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _forward(layer, x):
    """The layer's output as float64 NumPy; jitted on JAX (eager dispatch
    compiles every op anew)."""
    if not layer.built:
        layer.build(x.shape)
    if BACKEND == "jax":
        import jax

        x = keras.ops.cast(x, layer.compute_dtype)
        out, _ = jax.jit(layer.stateless_call)(
            [w.value for w in layer.trainable_weights],
            [w.value for w in layer.non_trainable_weights],
            x,
        )
    else:
        out = layer(keras.ops.convert_to_tensor(x))
    return to_numpy(keras.ops.cast(out, "float32")).astype("float64")


def _loss(outputs):
    # Mean over the map of per-image sums: O(1) gradients per element.
    outputs = keras.ops.cast(outputs, "float32")
    return keras.ops.mean(keras.ops.sum(outputs**2, axis=(1, 2)))


def _output_and_gradients(layer, x):
    """`layer(x)` and the gradients of `_loss` for `x` and every trainable
    weight, all as float64 NumPy, in that order."""
    out, (input_grad,), weight_grads = gradients(layer, [x], _loss)
    return [
        np.asarray(t, "float32").astype("float64")
        for t in (out, input_grad, *weight_grads.values())
    ]


def _twin(layer, policy, implementation, x):
    """A layer like `layer` (built, same weights) in `policy`."""
    twin = SelfAttention2D(
        gamma=float(to_numpy(layer.gamma)),
        attention_implementation=implementation,
        dtype=policy,
    )
    twin.build(x.shape)
    twin.set_weights(layer.get_weights())
    return twin


def _expected_implementation(device, policy, shape):
    """The kernel `auto` must run: the package's pure rule for this
    device, which on a flash-capable GPU under mixed precision is
    `fused` (asserted here in so many words)."""
    batch, height, width, channels = shape
    dtype = keras.DTypePolicy(policy).compute_dtype
    capability = gpu_capability() if device == "gpu" else None
    expected = auto.select_implementation(
        backend=BACKEND, platform=device, compute_capability=capability,
        dtype=dtype, num_queries=height * width, num_keys=height * width,
        batch_heads=batch, key_width=channels // 8,
        value_width=channels // 2,
    )
    if flash_expected(device) and dtype != "float32":
        assert expected == "fused"
    return expected


@pytest.mark.skipif(
    BACKEND not in FLASH_BACKENDS, reason="TensorFlow has no flash kernel"
)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_fused_path_as_accurate_as_the_float32_cast(device, dtype):
    """`fused` under mixed precision (the compute-dtype flash kernel on a
    GPU, the float32 cast on a CPU) is at most 1.5x as far from the
    float64 reference as `dense`, which casts q, k, v to float32, with the
    same weights. `gamma=100` makes the attention term dominate."""
    policy = f"mixed_{dtype}"
    x = _inputs((2, 32, 32, 64))
    fused = SelfAttention2D(
        gamma=100.0, attention_implementation="fused", dtype=policy
    )
    fused.build(x.shape)
    cast = _twin(fused, policy, "dense", x)
    expected, _ = reference_self_attention(fused, x)
    fused_error = relative_error(_forward(fused, x), expected)
    cast_error = relative_error(_forward(cast, x), expected)
    assert fused.last_kernel.implementation == "fused"
    assert fused.last_kernel.flash == flash_expected(device)
    # q and k rounded by the projections: ~1e-2 in bfloat16, ~1e-3 float16.
    assert cast_error < {"bfloat16": 0.1, "float16": 0.02}[dtype]
    assert fused_error <= 1.5 * cast_error


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_auto_runs_the_devices_kernel_under_mixed_precision(device, policy):
    x = _inputs((2, 32, 32, 64))
    layer = SelfAttention2D(gamma=1.0, dtype=policy)
    out = _forward(layer, x)
    expected = _expected_implementation(device, policy, x.shape)
    assert layer.last_kernel.implementation == expected
    assert layer.last_kernel.flash == (
        flash_expected(device) and expected == "fused"
    )
    assert np.isfinite(out).all()


# Relative error (largest error / largest value) of the mixed_bfloat16
# layer's output and gradients against float32 `dense` with the same
# weights: bfloat16 keeps 8 significant bits, and the softmax amplifies
# the rounding of q and k. Measured on CPU (torch and JAX, 6 seeds):
# 0.2-2.7e-2.
BFLOAT16_TOLERANCE = 5e-2


def test_mixed_bfloat16_fwd_bwd_matches_float32_dense(device):
    x = _inputs((2, 32, 32, 64))
    layer = SelfAttention2D(gamma=1.0, dtype="mixed_bfloat16")
    layer.build(x.shape)
    reference = _twin(layer, "float32", "dense", x)
    mixed = _output_and_gradients(layer, x)
    expected = _output_and_gradients(reference, x)
    assert layer.last_kernel.implementation == _expected_implementation(
        device, "mixed_bfloat16", x.shape
    )
    names = ["output", "input gradient"] + [
        w.path for w in layer.trainable_weights
    ]
    errors = {
        name: relative_error(found, wanted)
        for name, found, wanted in zip(names, mixed, expected, strict=True)
    }
    assert max(errors.values()) <= BFLOAT16_TOLERANCE, errors


def test_large_map_float32_matches_a_sampled_reference(device):
    """256x256 batch 2 on a GPU (N x M = 2**32 logits per image: only the
    memory-bounded kernels run it); 64x64 on a CPU, where the same
    forward and backward pass at 256x256 would take minutes. Checked
    against the float64 reference on a seeded sample of query rows."""
    size = 256 if device == "gpu" else 64
    x = _inputs((2, size, size, 64))
    layer = SelfAttention2D(gamma=1.0)
    out, input_grad, *_ = _output_and_gradients(layer, x)
    assert layer.last_kernel.implementation == _expected_implementation(
        device, "float32", x.shape
    )
    queries = np.sort(
        np.random.default_rng(0).choice(size * size, 256, replace=False)
    )
    expected = reference_rows(layer, x, queries)
    found = out.reshape(2, size * size, 64)[:, queries]
    assert relative_error(found, expected) < 1e-4
    assert np.isfinite(input_grad).all()


FAKE_GPU_LIST = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"


@pytest.mark.parametrize(
    "listing, cuda_build, outcome",
    [
        (FAKE_GPU_LIST, True, "fail"),
        (FAKE_GPU_LIST, False, "skip"),
        ("No devices were found", True, "skip"),
    ],
)
def test_a_gpu_test_without_a_gpu_fails_where_nvidia_smi_lists_one(
    tmp_path, monkeypatch, listing, cuda_build, outcome
):
    """A stand-in `nvidia-smi` first on PATH, and the backend's build
    described: the `gpu` variant's check on a machine with a GPU."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\necho '{listing}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpu_host, "built_with_cuda", lambda _: cuda_build)
    expected = {"fail": pytest.fail.Exception, "skip": pytest.skip.Exception}
    with pytest.raises(expected[outcome]) as raised:
        gpu_host.skip_or_fail_without_gpu(BACKEND)
    if outcome == "fail":
        assert "nvidia-smi lists 1 GPU(s)" in str(raised.value)
    else:
        assert f"no CUDA GPU for {BACKEND}" in str(raised.value)
