"""The device-aware `auto` rule and the fused kernel's two paths.

`select_implementation` and `flash_eligible` are pure functions of plain
values, so their GPU branches are tested here on a CPU machine. The tests
that run kernels compare the compute-dtype path with the float32 one on
the CPU backends that can run it.
"""

import re

import gpu_host
import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import to_numpy
from reference import relative_error
from reference import softmax

from conv_self_attention import kernels
from conv_self_attention.kernels import auto
from conv_self_attention.kernels import device
from conv_self_attention.kernels import fused

H200 = (9, 0)
A100 = (8, 0)
T4 = (7, 5)


def pick(**overrides):
    """`auto`'s choice for a 128x128 map, batch 8, one head, q/k 8 and
    v 32 channels, bfloat16 on an H200, with `overrides`."""
    arguments = {
        "backend": "jax",
        "platform": "gpu",
        "compute_capability": H200,
        "dtype": "bfloat16",
        "num_queries": 128 * 128,
        "num_keys": 128 * 128,
        "batch_heads": 8,
        "key_width": 8,
        "value_width": 32,
    }
    arguments.update(overrides)
    return auto.select_implementation(**arguments)


def square(side, batch_heads):
    """Overrides for a `side x side` map and `batch_heads`."""
    return {
        "num_queries": side * side,
        "num_keys": side * side,
        "batch_heads": batch_heads,
    }


@pytest.mark.once
@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_mixed_precision_picks_fused(backend, dtype):
    for side, batch in ((32, 32), (128, 8), (256, 2)):
        assert pick(backend=backend, dtype=dtype, **square(side, batch)) == (
            "fused"
        )


@pytest.mark.once
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_flash_needs_ampere_or_later(backend):
    assert pick(backend=backend, compute_capability=A100) == "fused"
    # Turing: no flash kernel, so the float32 rule of the backend.
    expected = {"jax": "chunked", "torch": "fused"}[backend]
    assert pick(backend=backend, compute_capability=T4) == expected
    assert not auto.flash_eligible(
        backend=backend, platform="gpu", compute_capability=T4,
        dtype="bfloat16", key_width=8, value_width=32,
    )
    assert not auto.flash_eligible(
        backend=backend, platform="gpu", compute_capability=None,
        dtype="bfloat16", key_width=8, value_width=32,
    )


@pytest.mark.once
def test_cudnn_head_width_limit():
    def eligible(capability, value_width, backend="jax"):
        return auto.flash_eligible(
            backend=backend, platform="gpu", compute_capability=capability,
            dtype="float16", key_width=8, value_width=value_width,
        )

    assert eligible(A100, 128) and not eligible(A100, 129)
    assert eligible(H200, 256) and not eligible(H200, 257)
    # 121 is padded to 128, the widest cuDNN takes before Hopper.
    assert eligible(A100, 121)
    assert eligible(A100, 256, backend="torch")
    assert not eligible(H200, 300, backend="torch")
    # Too wide for cuDNN: JAX's float32 rule, which never materialises
    # N x M at this size.
    assert pick(compute_capability=A100, value_width=192) == "chunked"


def _version(text):
    """`"0.8.2"` or `"0.10.2.dev1"` to a tuple of its leading numbers."""
    numbers = re.match(r"\d+(\.\d+)*", text).group(0)
    return tuple(int(part) for part in numbers.split("."))


@pytest.mark.once
def test_cudnn_rule_is_that_of_the_jax_floor():
    """`CUDNN_MAX_WIDTH` is JAX 0.8.2's rule: pyproject.toml must not allow
    an older JAX (whose cuDNN took 256-wide heads on fewer stacks), and the
    installed one must satisfy it. Blackwell follows Hopper there."""
    import importlib.metadata
    import pathlib
    import tomllib

    pyproject = pathlib.Path(__file__).parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"][
        "optional-dependencies"
    ]
    (requirement,) = extras["jax"]
    floor = _version(requirement.split(">=")[1])
    assert floor == auto.CUDNN_RULE_SINCE_JAX
    installed = _version(importlib.metadata.version("jax"))
    assert installed >= floor

    def width_limit(capability):
        return max(
            width
            for width in (64, 128, 256, 512)
            if auto.flash_eligible(
                backend="jax", platform="gpu", compute_capability=capability,
                dtype="bfloat16", key_width=8, value_width=width,
            )
        )

    assert width_limit((8, 0)) == width_limit((8, 9)) == 128
    for capability in ((9, 0), (10, 0), (10, 3), (12, 0)):
        assert width_limit(capability) == 256


@pytest.mark.once
def test_float32_and_cpu_never_use_the_compute_dtype():
    for backend in ("jax", "torch", "tensorflow"):
        for platform, dtype in (("gpu", "float32"), ("cpu", "bfloat16"),
                                ("cpu", "float16"), ("tpu", "bfloat16")):
            assert not auto.flash_eligible(
                backend=backend, platform=platform, compute_capability=H200,
                dtype=dtype, key_width=8, value_width=32,
            )
    # TensorFlow has no flash kernel behind `dot_product_attention`.
    assert not auto.flash_eligible(
        backend="tensorflow", platform="gpu", compute_capability=H200,
        dtype="bfloat16", key_width=8, value_width=32,
    )


@pytest.mark.once
def test_gpu_float32_rule():
    # JAX: dense where it won (32x32 batch 32, 64x64 batch 16), then the
    # memory-bounded chunked kernel.
    for side, batch, expected in (
        (32, 32, "dense"), (64, 16, "dense"), (128, 8, "chunked"),
        (256, 2, "chunked"), (64, 64, "chunked"),
    ):
        assert pick(dtype="float32", **square(side, batch)) == expected
    # torch: dense while its logits are small, then SDPA's fused kernel.
    for side, batch, expected in (
        (32, 32, "dense"), (128, 8, "fused"), (256, 2, "fused"),
    ):
        assert (
            pick(backend="torch", dtype="float32", **square(side, batch))
            == expected
        )
    # Unknown sizes: never dense on a GPU.
    assert pick(dtype="float32", num_queries=None) == "chunked"
    assert pick(dtype="float32", **square(8, None)) == (
        "chunked"
    )


@pytest.mark.once
def test_unmeasured_devices_get_chunked():
    assert pick(backend="tensorflow") == "chunked"
    assert pick(backend="tensorflow", **square(8, 1)) == "chunked"
    for backend in ("jax", "torch", "tensorflow"):
        for dtype in ("float32", "bfloat16"):
            assert pick(
                backend=backend, platform="tpu", compute_capability=None,
                dtype=dtype, **square(8, 1),
            ) == "chunked"
    assert pick(backend="torch", platform="mps", compute_capability=None) == (
        "chunked"
    )


@pytest.mark.once
def test_cpu_rule_is_unchanged():
    def cpu(backend, length, keys, dtype="float32"):
        return pick(
            backend=backend, platform="cpu", compute_capability=None,
            dtype=dtype, num_queries=length, num_keys=keys, batch_heads=4,
        )

    for dtype in ("float32", "float16", "bfloat16"):
        assert cpu("torch", 256, 256, dtype) == "fused"
        assert cpu("torch", 16384, 16384, dtype) == "fused"
        assert cpu("tensorflow", 1024, 1024, dtype) == "dense"
        assert cpu("tensorflow", 1025, 1024, dtype) == "chunked"
        assert cpu("tensorflow", None, None, dtype) == "chunked"
        assert cpu("jax", 64, 64, dtype) == "chunked"


@pytest.mark.once
def test_scores_always_dense():
    """Asking for scores overrides any requested kernel, in one place."""
    for backend in ("jax", "torch", "tensorflow"):
        for platform in ("cpu", "gpu", "tpu"):
            for implementation in kernels.IMPLEMENTATIONS:
                planned = kernels.plan_kernel(
                    backend=backend,
                    device=device.Device(platform, H200 if platform == "gpu"
                                  else None),
                    dtype="bfloat16", num_queries=64, num_keys=64, batch=2,
                    heads=1, key_width=8, value_width=32,
                    implementation=implementation, return_scores=True,
                )
                assert planned.implementation == "dense"
                assert planned.scores and planned.blocks is None


@pytest.mark.once
def test_padded_width():
    assert fused.padded_width(8, 32) == 32
    assert fused.padded_width(3, 5) == 8
    assert fused.padded_width(40, 33) == 40
    assert fused.padded_width(1, 121) == 128


def _attention_inputs(seed=0):
    """q, k, v of one head whose logits are O(10), as in a trained layer,
    so the softmax is neither uniform nor one-hot."""
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(2, 64, 1, 8)) * 1.2
    key = rng.normal(size=(2, 40, 1, 8)) * 1.2
    value = rng.normal(size=(2, 40, 1, 32))
    return [x.astype("float32") for x in (query, key, value)]


def _reference(query, key, value):
    """float64 NumPy attention of the float32 inputs."""
    query, key, value = (x.astype("float64")[:, :, 0] for x in (query, key,
                                                              value))
    probs = softmax(np.einsum("bnd,bmd->bnm", query, key))
    return np.einsum("bnm,bmd->bnd", probs, value)[:, :, None]


def _relative_error(out, expected):
    out = to_numpy(keras.ops.cast(out, "float32")).astype("float64")
    return relative_error(out, expected)


def _fused(dtype, flash):
    def run(query, key, value):
        query, key, value = (
            keras.ops.cast(x, dtype) for x in (query, key, value)
        )
        return fused.fused_attention(
            query, key, value, 1.0, flash=flash, platform="cpu"
        )

    if BACKEND == "jax":
        import jax

        return jax.jit(run)
    return run


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="TensorFlow has no flash kernel"
)
def test_compute_dtype_path_as_accurate_as_float32_cast():
    """bfloat16 on the CPU flash kernel (torch) or XLA (JAX)."""
    inputs = _attention_inputs()
    expected = _reference(*inputs)
    flash = _fused("bfloat16", True)(*inputs)
    assert keras.backend.standardize_dtype(flash.dtype) == "bfloat16"
    cast = _fused("bfloat16", False)(*inputs)
    flash_error = _relative_error(flash, expected)
    cast_error = _relative_error(cast, expected)
    # Both are off by q, k, v rounded to bfloat16 (~1e-2), not more.
    assert 1e-3 < cast_error < 0.1
    assert flash_error <= 1.5 * cast_error


@pytest.mark.skipif(BACKEND != "torch", reason="torch's CPU flash kernel")
def test_torch_compute_dtype_path_in_float16():
    inputs = _attention_inputs()
    expected = _reference(*inputs)
    flash = _fused("float16", True)(*inputs)
    assert keras.backend.standardize_dtype(flash.dtype) == "float16"
    cast = _fused("float16", False)(*inputs)
    assert _relative_error(flash, expected) <= 1.5 * _relative_error(
        cast, expected
    )


@pytest.mark.skipif(BACKEND != "jax", reason="JAX on CPU")
@pytest.mark.parametrize("implementation", ["fused", "auto"])
def test_jax_cpu_float16_never_takes_the_compute_dtype_path(implementation):
    """Pinned to the CPU, so it runs on GPU hosts too."""
    import jax

    inputs = _attention_inputs()

    def run(query, key, value):
        query, key, value = (
            keras.ops.cast(x, "float16") for x in (query, key, value)
        )
        return kernels.attention(
            query, key, value, scale=1.0, implementation=implementation
        )

    with jax.default_device(jax.devices("cpu")[0]):
        out = jax.jit(run)(*inputs)
        assert keras.backend.standardize_dtype(out.dtype) == "float16"
        assert _relative_error(out, _reference(*inputs)) < 1e-2
        # The path it must avoid does not compile here.
        with pytest.raises(ValueError, match="F16_F16_F32"):
            _fused("float16", True)(*inputs)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX cuDNN")
@pytest.mark.gpu_specific
def test_jax_compute_dtype_path_on_gpu_needs_cudnn():
    """Runs where JAX has an NVIDIA GPU of compute capability 8.0+ (with
    cuDNN); elsewhere raises rather than fall back to XLA's N x M path."""
    inputs = _attention_inputs()
    query, key, value = (keras.ops.cast(x, "bfloat16") for x in inputs)
    found = device.find_device(query)
    if found.platform == "gpu" and (found.compute_capability or ()) >= A100:
        out = fused.fused_attention(
            query, key, value, 1.0, flash=True, platform="gpu"
        )
        assert _relative_error(out, _reference(*inputs)) < 0.05
    else:
        # Not the GPU branch by accident: a CUDA JAX that lost its GPU.
        if found.platform != "gpu":
            problem = gpu_host.unseen_gpu_problem("jax")
            assert problem is None, problem
        with pytest.raises(RuntimeError, match="cuDNN"):
            fused.fused_attention(
            query, key, value, 1.0, flash=True, platform="gpu"
        )
