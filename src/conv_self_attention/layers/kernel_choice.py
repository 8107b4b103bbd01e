"""Choosing, for a while, the attention kernel of every layer: what an
export traces, without rebuilding the model or changing its config."""

import contextlib
import contextvars

from conv_self_attention.checks import positive_int
from conv_self_attention.kernels import validate_implementation

_CHOICE = contextvars.ContextVar("attention_kernel_choice", default=None)


@contextlib.contextmanager
def use_attention_kernel(implementation, chunk_size=None):
    """Runs every self-attention layer with one kernel inside the block.

    Layers called or traced inside the block use `implementation` and
    `chunk_size` instead of their own `attention_implementation` and
    `chunk_size`. Nothing is stored: `get_config`, a saved `.keras` file
    and the layer's attributes keep their values, and calls after the
    block use them again. This chooses what an export holds (the kernel
    and block size traced into a SavedModel, ONNX, LiteRT or
    `torch.export` graph) on any machine: without it, `"auto"` decides
    for the exporting machine's device and the chunked kernel's blocks
    are sized for it. `layer.last_kernel` shows what was traced.

    Args:
        implementation: `"auto"`, `"dense"`, `"chunked"` or `"fused"`.
        chunk_size: query positions per block of the chunked kernel.
            Defaults to `None`: blocks sized for the device
            (`kernels.chunked.plan_blocks`), not the layers' own value.

    Raises:
        ValueError: for an unknown `implementation` or a `chunk_size` that
            is not `None` or a positive int.

    Example:

    ```python
    >>> inputs = keras.Input((32, 32, 16))
    >>> model = keras.Model(inputs, SelfAttention2D(name="att")(inputs))
    >>> with use_attention_kernel("chunked", chunk_size=256):
    ...     _ = model(np.zeros((1, 32, 32, 16), "float32"))
    >>> kernel_call = model.get_layer("att").last_kernel
    >>> kernel_call.implementation, kernel_call.chunk_size
    ('chunked', 256)
    >>> model.get_layer("att").get_config()["attention_implementation"]
    'auto'
    ```
    """
    validate_implementation(implementation)
    chunk_size = positive_int("chunk_size", chunk_size, allow_none=True)
    token = _CHOICE.set((implementation, chunk_size))
    try:
        yield
    finally:
        _CHOICE.reset(token)


def requested_kernel(layer):
    """`(implementation, chunk_size)` requested for `layer` right now: a
    `use_attention_kernel` block's, else the layer's own (`auto` unresolved)."""
    choice = _CHOICE.get()
    if choice is None:
        return layer.attention_implementation, layer.chunk_size
    return choice
