"""The fused kernel: the backend's fused attention made exact for SAGAN's
unequal widths.

Fused attention kernels want query, key and value of one width; torch
falls back to its math path otherwise, which materialises every N x M
matrix. Zero channels add nothing to q·k, so padding query, key and value
with zeros up to a common width (a multiple of 8, which the GPU kernels
need) keeps the result exact; the explicit scale keeps the logits those of
the unpadded heads, and the padded output channels are dropped.

Two paths, chosen by the caller (`attention(...)` asks
`auto.flash_eligible`):

- float32 (everywhere by default): q, k, v cast to float32. torch runs
  SDPA with its math path excluded (CPU: the flash kernel; CUDA: the
  memory-efficient one), so it never holds N x M. JAX and TensorFlow run
  `keras.ops.dot_product_attention`, which there is XLA's or TF's plain
  softmax over N x M: `auto` never picks `fused` on them in float32.
- compute dtype (`flash=True`): q, k, v stay float16/bfloat16
  and go to a flash kernel that accumulates q·k and the softmax in
  float32. torch: SDPA without its math path (flash, memory-efficient or
  cuDNN on CUDA; the flash kernel on CPU). JAX: `jax.nn.dot_product_attention`
  with `implementation="cudnn"` on a GPU, which raises rather than fall
  back to XLA when cuDNN cannot take the inputs; elsewhere (only reached
  when asked for explicitly, e.g. by tests) XLA's bfloat16 attention.
  TensorFlow has no such kernel and always takes the float32 path.
"""

import importlib

import keras
from keras import ops

from conv_self_attention.kernels.device import static_size

# Head widths of the fused kernels are padded to a multiple of this.
WIDTH_MULTIPLE = 8

_BACKEND_MODULES = {
    "jax": "conv_self_attention.kernels._fused_jax",
    "torch": "conv_self_attention.kernels._fused_torch",
}


def padded_width(key_width, value_width):
    """The common head width that q, k and v are zero-padded to."""
    width = max(key_width, value_width)
    return -(-width // WIDTH_MULTIPLE) * WIDTH_MULTIPLE


def _pad_last_axis(tensor, width):
    extra = width - static_size(tensor.shape[-1])
    if extra == 0:
        return tensor
    return ops.pad(tensor, [[0, 0], [0, 0], [0, 0], [0, extra]])


def fused_attention(query, key, value, scale, *, flash=False, platform="cpu"):
    """The `fused` kernel: the backend's fused attention, exact.

    Args:
        query: tensor, `(B, N, h, dk)`.
        key: tensor, `(B, M, h, dk)`.
        value: tensor, `(B, M, h, dv)`.
        scale: float, python float multiplying the logits.
        flash: bool, feed a flash kernel q, k, v in `value.dtype` instead
            of float32 (`KernelCall.flash`; module docstring: where it may
            be used). Defaults to `False`.
        platform: str, the device platform (`kernels.device`); on JAX it
            picks cuDNN (`"gpu"`) or XLA for the compute-dtype path.
            Defaults to `"cpu"`.

    Returns:
        A tensor `(B, N, h, dv)` in `value.dtype`.
    """
    # Python ints: shape arithmetic on the tensors torch's TorchScript
    # tracer gives for sizes would be recorded in an exported graph.
    value_width = static_size(value.shape[-1])
    width = padded_width(static_size(query.shape[-1]), value_width)
    dtype = value.dtype if flash else "float32"
    query, key, padded_value = (
        _pad_last_axis(ops.cast(tensor, dtype), width)
        for tensor in (query, key, value)
    )
    module_name = _BACKEND_MODULES.get(keras.backend.backend())
    if module_name is not None:
        backend_kernel = importlib.import_module(module_name)
        out = backend_kernel.fused_attention(
            query, key, padded_value, scale, flash=flash, platform=platform
        )
    else:
        out = ops.dot_product_attention(query, key, padded_value, scale=scale)
    return ops.cast(out[..., :value_width], value.dtype)
