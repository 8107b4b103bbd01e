"""Where the attention runs: the one place that asks the backend.

`find_device(tensor)` returns a `Device`: the platform and, for NVIDIA
GPUs, the compute capability as a `(major, minor)` tuple. The `auto` rule
and the kernels take this value as plain data, so they can be tested for a
GPU on a machine without one. Platforms: `"cpu"`, `"gpu"` (NVIDIA CUDA),
`"rocm"` (AMD GPUs), `"tpu"`, or another device name (`"mps"`, ...); only
CPUs and NVIDIA GPUs have been measured.

The device is the one the computation runs on, not the machine's first:

- torch: Keras' torch device (a `keras.device` scope, else
  `KERAS_TORCH_DEVICE`, else the first accelerator), since Keras' torch
  ops move every input there: a CPU tensor given while Keras computes on
  a GPU runs on the GPU. `cuda` is `"gpu"` with its capability, or
  `"rocm"` on a ROCm build; `mps`, `meta` and others keep their name.
- JAX: a concrete array's device; when traced (a tracer has none), the
  first device of the active Keras distribution, else the device set by
  `jax.default_device`, else the first device of the default backend.
- TensorFlow: the device the tensor was placed on or asked for (eager
  tensors know it; traced ones carry their `tf.device` scope), else the
  scope around the traced function, else TensorFlow's own choice: the
  first GPU when one is visible, a TPU likewise, else the CPU.
"""

import collections
import contextlib
import contextvars
import functools

import keras

from conv_self_attention.checks import is_int

Device = collections.namedtuple("Device", ["platform", "compute_capability"])
"""The device a computation runs on (a named tuple; `find_device`).

Attributes:
    platform: str, `"cpu"`, `"gpu"` (NVIDIA CUDA), `"rocm"`, `"tpu"`, or
        another device name (`"mps"`, `"meta"`, ...).
    compute_capability: tuple or None, `(major, minor)` of an NVIDIA GPU;
        `None` elsewhere, or where the backend does not report it.
"""

CPU = Device("cpu", None)


def find_device(tensor):
    """The `Device` that computes on `tensor` with the current backend."""
    backend = keras.backend.backend()
    if backend == "torch":
        (tensor,) = on_compute_device(tensor)
        return _torch_device(tensor.device)
    if backend == "jax":
        return _jax_device(tensor)
    if backend == "tensorflow":
        return _tensorflow_device(tensor)
    return CPU


def on_compute_device(*tensors):
    """The tensors where Keras computes on them.

    torch's Keras ops move a tensor from another device (and put a NumPy
    input) on Keras' device, but `ops.cast` to its own dtype does not,
    and the torch kernels call torch directly: without this a CPU input
    beside a GPU one would reach SDPA. A no-op for tensors already there
    (and for traced ones) on every backend.
    """
    return tuple(keras.ops.convert_to_tensor(tensor) for tensor in tensors)


# Set by `export_model` (`traced_for_export`): a JAX export traces the same
# ops as any `jax.jit`, so only the exporting code can say it exports.
_EXPORT_TRACE = contextvars.ContextVar("export_trace", default=False)


@contextlib.contextmanager
def traced_for_export():
    """Within it, `is_exporting()` is `True` on JAX: what `export_model`
    enters around Keras' `model.export`, so that the layer traces the
    form of its kernels made for exporters."""
    token = _EXPORT_TRACE.set(True)
    try:
        yield
    finally:
        _EXPORT_TRACE.reset(token)


def is_exporting():
    """Whether an exporter traces the current call into a graph.

    torch tells by itself: `torch.export` and both ONNX exporters (the
    TorchScript tracer, and dynamo's, which runs `torch.export`). A JAX
    export traces the same ops as any `jax.jit`: there it is `True` only
    within `traced_for_export()`, which `export_model` enters (a direct
    `model.export` traces the training form). A TensorFlow export needs no
    other form, so this is `False` there.

    Returns:
        `True` while torch traces for an exporter, or JAX within
        `traced_for_export()`; else `False`.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return _EXPORT_TRACE.get()
    if backend != "torch":
        return False
    import torch

    # `is_exporting` appeared in torch 2.6; before it, only tracing shows.
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return bool(torch.jit.is_tracing() or exporting())


def static_size(size):
    """A dimension of a static shape as a Python int, `None` (or a
    symbolic size) as it is.

    torch's TorchScript tracer (what Keras' `model.export(format="onnx")`
    runs with a dynamic batch) hands out every dimension as a 0-dim
    tensor. Arithmetic on it is recorded in the graph, and a plan that
    sees no int cannot clip the chunked kernel's blocks to N. Its value is
    the size the trace was taken at: read it as an int. Only for sizes
    that are static in the export (channel widths, heads, and N and M
    where the spatial size is given), never the batch. Where the spatial
    size is left open, Keras traces it at 1 and a `chunked` graph then
    fails at other sizes (as it did before, with another error): fix the
    size at export.

    Args:
        size: int, None, or a size read off a tensor's shape.

    Returns:
        `size` as an int where it is one or a tensor the tracer made of
        it, else `size` unchanged.
    """
    if size is None or is_int(size):
        return size
    if keras.backend.backend() == "torch":
        import torch

        if isinstance(size, torch.Tensor) and size.ndim == 0:
            return int(size)
    return size


def parse_capability(text):
    """`"9.0"` to `(9, 0)`; anything else (a ROCm arch name) to `None`."""
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        return None


def parse_device_name(name):
    """`(platform, index)` of a device name, `(None, 0)` for `""`.

    Takes Keras' `"gpu:0"`, torch's `"cuda:1"` and TensorFlow's
    `"/job:localhost/replica:0/task:0/device:GPU:0"` or `"/GPU:1"`.
    """
    name = str(name).rsplit("/", 1)[-1]
    if name.startswith("device:"):
        name = name[len("device:") :]
    if not name:
        return None, 0
    kind, _, index = name.partition(":")
    kind = kind.lower()
    kind = "gpu" if kind == "cuda" else kind
    return kind, int(index) if index.isdigit() else 0


def _torch_device(device):
    import torch

    if device.type != "cuda":
        return Device(device.type, None)
    if torch.version.hip is not None:
        return Device("rocm", None)
    return Device("gpu", _torch_capability(device.index or 0))


@functools.cache
def _torch_capability(index):
    import torch

    return tuple(torch.cuda.get_device_capability(index))


def _jax_device(tensor):
    import jax

    if isinstance(tensor, jax.Array) and not isinstance(
        tensor, jax.core.Tracer
    ):
        return _from_jax_device(next(iter(tensor.devices())))
    distribution = keras.distribution.distribution()
    if distribution is not None:
        first = distribution.device_mesh.devices.flat[0]
        if not isinstance(first, str):
            return _from_jax_device(first)
        platform, index = parse_device_name(first)
        return _from_jax_device(jax.devices(platform)[index])
    default = jax.config.jax_default_device
    if isinstance(default, str):
        default = jax.devices(default)[0]
    if default is not None:
        return _from_jax_device(default)
    return _from_jax_device(jax.devices()[0])


def _from_jax_device(device):
    platform = device.platform
    if platform not in ("gpu", "cuda", "rocm"):
        return Device(platform, None)
    version = str(getattr(device.client, "platform_version", "")).lower()
    if platform == "rocm" or "rocm" in version:
        return Device("rocm", None)
    capability = getattr(device, "compute_capability", None)
    return Device("gpu", parse_capability(capability))


def _tensorflow_device(tensor):
    import tensorflow as tf

    # NumPy arrays have a `device` too ("cpu"), but TF places them itself.
    name = tensor.device if tf.is_tensor(tensor) else ""
    name = name or _tensorflow_scope()
    platform, index = parse_device_name(name)
    if platform is None:
        if tf.config.list_logical_devices("GPU"):
            platform = "gpu"
        elif tf.config.list_logical_devices("TPU"):
            platform = "tpu"
        else:
            return CPU
    if platform == "gpu":
        return Device("gpu", _tensorflow_capability(index))
    return Device(platform, None)


def _tensorflow_scope():
    """The `tf.device` scope of the eager context, which a `tf.function`
    traced inside it runs under though its ops carry no device. TF has no
    public reader for it: this one private attribute, read defensively."""
    try:
        from tensorflow.python.eager import context

        return context.context().device_name or ""
    except (ImportError, AttributeError):
        return ""


@functools.cache
def _tensorflow_capability(index):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(
        gpus[min(index, len(gpus) - 1)]
    )
    capability = details.get("compute_capability")
    return None if capability is None else tuple(capability)
