"""Helpers shared by the tests (imported as `helpers`: pytest puts `tests/`
on the path). The only test module that touches private `keras.src` (for
Keras' own `run_layer_test`, and Keras' torch device on `meta`). Fixtures
live in `conftest.py`."""

import contextlib

import keras
import numpy as np
import pytest
from keras.src import testing

BACKEND = keras.backend.backend()


class KerasTestCase(testing.TestCase):
    """Keras' own test case, for `run_layer_test`."""


def to_numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def values_readable():
    """False where Keras computes on torch's `meta` device
    (`KERAS_TORCH_DEVICE=meta`, `make test-meta`): a stand-in for a GPU
    whose tensors have devices, shapes and dtypes but no values."""
    if BACKEND != "torch":
        return True
    return keras.ops.convert_to_tensor(0.0).device.type != "meta"


def skip_without_values():
    """Skips the rest of a test that compares values, once it has checked
    what a `meta` run can check (devices, shapes, dtypes)."""
    if not values_readable():
        pytest.skip("meta device: placement checked, values not readable")


def sum_of_squares(outputs):
    return keras.ops.sum(keras.ops.cast(outputs, "float32") ** 2)


def gradients(fn, inputs, loss_fn=sum_of_squares, training=False):
    """`fn(*inputs)` and the gradients of `loss_fn` of it, on any backend.

    `fn` is a layer (its trainable weights are differentiated too; it runs
    with `training`) or a plain function of tensors. JAX runs one jitted
    program (op-by-op eager JAX is several times slower); torch computes
    on Keras' device (a GPU, or `meta` in `make test-meta`, where the
    backward pass runs and its gradients' devices, shapes and dtypes are
    checked, but no value can be read: the gradients are then `None`).

    Returns:
        `(output, input_gradients, weight_gradients)`: NumPy arrays (the
        output's dtype kept), a list per input, and a dict by weight path
        (empty for a plain function).
    """
    layer = fn if isinstance(fn, keras.layers.Layer) else None
    if layer is not None and not layer.built:
        layer.build(np.shape(inputs[0]))
    weights = layer.trainable_weights if layer is not None else []
    out, grads = _BACKEND_GRADIENTS[BACKEND](
        fn, layer, [keras.ops.convert_to_tensor(x) for x in inputs],
        loss_fn, training,
    )
    if grads is None:
        return to_numpy(out) if values_readable() else out, None, None
    grads = [
        np.zeros(np.shape(w)) if g is None else to_numpy(g)
        for w, g in zip([*inputs, *weights], grads, strict=True)
    ]
    weight_grads = dict(
        zip((w.path for w in weights), grads[len(inputs):], strict=True)
    )
    return to_numpy(out), grads[: len(inputs)], weight_grads


def _jax_gradients(fn, layer, inputs, loss_fn, training):
    import jax

    if layer is None:
        def loss(trainable, *tensors):
            out = fn(*tensors)
            return loss_fn(out), out

        trainable = []
    else:
        frozen = [w.value for w in layer.non_trainable_weights]

        def loss(trainable, *tensors):
            # As `__call__` would (`stateless_call` does not autocast).
            tensors = [keras.ops.cast(t, layer.compute_dtype) for t in tensors]
            out, _ = layer.stateless_call(
                trainable, frozen, *tensors, training=training
            )
            return loss_fn(out), out

        trainable = [w.value for w in layer.trainable_weights]
    argnums = tuple(range(len(inputs) + 1))
    step = jax.jit(jax.grad(loss, argnums=argnums, has_aux=True))
    (weight_grads, *input_grads), out = step(trainable, *inputs)
    return out, [*input_grads, *weight_grads]


def _torch_gradients(fn, layer, inputs, loss_fn, training):
    import torch

    weights = [w.value for w in (layer.trainable_weights if layer else [])]
    # The backward pass runs on `meta` too (values aside).
    with keras_keeps_autograd():
        tensors = [t.detach().requires_grad_(True) for t in inputs]
        out = fn(*tensors, training=training) if layer else fn(*tensors)
        # Where the code under test computes: Keras' device, not the CPU.
        assert out.device == tensors[0].device, (out.device,
                                                 tensors[0].device)
        sources = [*tensors, *weights]
        grads = torch.autograd.grad(loss_fn(out), sources, allow_unused=True)
    for source, grad in zip(sources, grads, strict=True):
        assert grad is None or (grad.device, grad.shape, grad.dtype) == (
            source.device, source.shape, source.dtype), (grad, source)
    if not values_readable():
        return out, None  # devices, shapes and dtypes checked; no values
    return out.detach(), grads


def _tensorflow_gradients(fn, layer, inputs, loss_fn, training):
    import tensorflow as tf

    weights = [w.value for w in layer.trainable_weights] if layer else []
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = fn(*inputs, training=training) if layer else fn(*inputs)
        loss = loss_fn(out)
    return out, tape.gradient(loss, [*inputs, *weights])


_BACKEND_GRADIENTS = {
    "jax": _jax_gradients,
    "torch": _torch_gradients,
    "tensorflow": _tensorflow_gradients,
}


def compiled_call(layer, x):
    """`layer(x)`; jitted on JAX, where eager dispatch compiles every op
    anew for each shape and costs several times one compiled call."""
    if BACKEND != "jax":
        return layer(x)
    import jax

    if not layer.built:
        layer.build(x.shape)
    # `stateless_call` skips the input autocasting that `__call__` does.
    x = keras.ops.cast(x, layer.compute_dtype)
    outputs, _ = jax.jit(layer.stateless_call)(
        [w.value for w in layer.trainable_weights],
        [w.value for w in layer.non_trainable_weights],
        x,
    )
    return outputs


@contextlib.contextmanager
def keras_keeps_autograd():
    """Lets gradients flow through Keras ops on torch's `meta` device
    (`make test-meta`); changes nothing anywhere else. Keras 3.15's torch
    `convert_to_tensor` compares a tensor's device with Keras' device held
    as a string ("meta"), which a `torch.device` never equals, and then
    replaces a meta tensor by a new empty one: every op cuts the autograd
    graph. Held as a `torch.device`, the two compare equal and tensors
    are kept. Build layers before entering: Keras cannot create variables
    on a `torch.device("meta")`."""
    if BACKEND != "torch" or values_readable():
        yield
        return
    import torch
    from keras.src.backend.common import global_state

    previous = global_state.get_global_attribute("torch_device", None)
    global_state.set_global_attribute("torch_device", torch.device("meta"))
    try:
        yield
    finally:
        global_state.set_global_attribute("torch_device", previous)
