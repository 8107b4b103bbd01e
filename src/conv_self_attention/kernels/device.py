"""Where the attention runs: the one place that asks the backend.

`find_device(tensor)` returns a `Device`: the platform (`"cpu"`, `"gpu"`,
`"tpu"`, or another name for devices nobody has measured) and, for NVIDIA
GPUs, the compute capability as a `(major, minor)` tuple. The `auto` rule
and the kernels take this value as plain data, so they can be tested for a
GPU on a machine without one.

- torch: the tensor's own device (`cuda` is `"gpu"`, with its capability;
  ROCm builds report no capability; `mps` and others keep their name).
- JAX: the default backend, where jitted code runs (a traced array has no
  device to ask).
- TensorFlow: `"gpu"` when a logical GPU is visible, `"tpu"` likewise,
  else `"cpu"`.
"""

import collections
import functools

import keras

Device = collections.namedtuple("Device", ["platform", "compute_capability"])

CPU = Device("cpu", None)


def find_device(tensor):
    """The `Device` that computes on `tensor` with the current backend."""
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_device(_torch_tensor(tensor).device)
    if backend == "jax":
        return _jax_device()
    if backend == "tensorflow":
        return _tensorflow_device()
    return CPU


def _parse_capability(text):
    """`"9.0"` to `(9, 0)`; anything else (a ROCm arch name) to `None`."""
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        return None


def _torch_tensor(tensor):
    """`tensor` itself, or a NumPy input where Keras would put it."""
    import torch

    if isinstance(tensor, torch.Tensor):
        return tensor
    return keras.ops.convert_to_tensor(tensor)


def _torch_device(device):
    import torch

    if device.type != "cuda":
        return Device(device.type, None)
    if torch.version.hip is not None:
        return Device("gpu", None)
    return Device("gpu", _torch_capability(device.index))


@functools.cache
def _torch_capability(index):
    import torch

    return tuple(torch.cuda.get_device_capability(index))


@functools.cache
def _jax_device():
    import jax

    platform = jax.default_backend()
    if platform != "gpu":
        return Device(platform, None)
    device = jax.devices()[0]
    capability = getattr(device, "compute_capability", None)
    return Device("gpu", _parse_capability(capability))


def _tensorflow_device():
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return Device("gpu", _tensorflow_capability())
    if tf.config.list_logical_devices("TPU"):
        return Device("tpu", None)
    return CPU


@functools.cache
def _tensorflow_capability():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    return None if capability is None else tuple(capability)
