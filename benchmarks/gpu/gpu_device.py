"""The device a GPU benchmark worker computes on, and its matmul roof.

`device_info` names the device and records what the checks and the
report need: GPU or not, compute capability, and the float32 matmul
precision in force (JAX's default on Ampere and later GPUs is TF32-like,
TensorFlow enables TF32 by default, torch does not for matmuls but does
for cuDNN convolutions).
"""

import gc
import os
import platform
import re
import time

GIB = 2**30


def seconds(step):
    """Wall seconds of one call of `step`."""
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def release_memory(backend):
    # Frees the last case's tensors before the next case measures memory.
    gc.collect()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def matmul_roof(backend, size):
    """TFLOP/s of the best of 5 `size`^3 matmuls per dtype (None if the
    backend cannot run that dtype here)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.normal(size=(size, size)).astype("float32")
    rates = {}
    for dtype in ("bfloat16", "float32"):
        try:
            matrix = keras.ops.cast(keras.ops.convert_to_tensor(data), dtype)
            step = _matmul_step(backend, matrix)
            step()
            best = min(seconds(step) for _ in range(5))
            rates[dtype] = 2.0 * size**3 / best / 1e12
        except Exception as error:  # noqa: BLE001 - recorded, not fatal
            rates[dtype] = None
            rates[dtype + "_error"] = repr(error)[:200]
    return rates


def _matmul_step(backend, matrix):
    """A callable multiplying `matrix` by itself and waiting for it."""
    if backend == "jax":
        import jax

        product = jax.jit(lambda a: a @ a)
        return lambda: jax.block_until_ready(product(matrix))
    if backend == "torch":
        import torch

        def step():
            torch.matmul(matrix, matrix)
            if matrix.is_cuda:
                torch.cuda.synchronize()

        return step
    import tensorflow as tf

    # One element fetched to the host waits for the whole product.
    return lambda: tf.matmul(matrix, matrix)[0, 0].numpy()


def device_info(backend):
    """Name, slug, GPU or not, compute capability and float32 matmul
    precision of the device the backend computes on."""
    finders = {
        "torch": _torch_device,
        "jax": _jax_device,
        "tensorflow": _tensorflow_device,
    }
    device = finders[backend]()
    device["slug"] = slugify(device["name"])
    return device


def _torch_device():
    import torch

    if not torch.cuda.is_available():
        return {"name": "cpu", "gpu": False}
    major, minor = torch.cuda.get_device_capability(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "gpu": True,
        "compute_capability": f"{major}.{minor}",
        "memory_gib": torch.cuda.get_device_properties(0).total_memory / GIB,
        "float32_matmul": (
            "TF32" if torch.backends.cuda.matmul.allow_tf32 else "float32"
        ),
        # Convolutions (the layer's 1x1 projections) go through cuDNN.
        "float32_cudnn": (
            "TF32" if torch.backends.cudnn.allow_tf32 else "float32"
        ),
    }


def _jax_device():
    import jax

    device = jax.devices()[0]
    precision = jax.config.jax_default_matmul_precision
    info = {
        "name": device.device_kind,
        "gpu": device.platform == "gpu",
        "platform": device.platform,
        "float32_matmul": precision or "default",
    }
    capability = getattr(device, "compute_capability", None)
    if capability is not None:
        info["compute_capability"] = str(capability)
    if info["gpu"] and not precision:
        info["float32_matmul_note"] = (
            "JAX's default float32 matmul precision is TF32-like on Ampere "
            "and later GPUs; jax.default_matmul_precision('highest') "
            "restores full float32"
        )
    return info


def _tensorflow_device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    if not gpus:
        return {"name": "cpu", "gpu": False}
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    return {
        "name": details.get("device_name", "GPU"),
        "gpu": True,
        "compute_capability": (
            ".".join(map(str, capability)) if capability else None
        ),
        "float32_matmul": "TF32" if tf32 else "float32",
    }


def slugify(name):
    """`NVIDIA H200` -> `nvidia-h200`: the device part of file names."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown"


def versions(backend):
    """Python, Keras and the backend's version, from the worker."""
    import keras

    module = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}
    found = {"python": platform.python_version(), "keras": keras.__version__}
    found[backend] = __import__(module[backend]).__version__
    return found


def host_info():
    """CPU count and host memory, without psutil (optional elsewhere)."""
    info = {"cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / GIB, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    return info
