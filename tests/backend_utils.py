"""Backend-specific test utilities; the only test module that touches
private `keras.src` (for Keras' own `run_layer_test`, and Keras' torch
device on `meta`)."""

import contextlib

import keras
import numpy as np
from keras.src import testing

BACKEND = keras.backend.backend()


class KerasTestCase(testing.TestCase):
    """Keras' own test case, for `run_layer_test`."""


def trainable_gradients(layer, inputs, loss_fn=None):
    """Gradients of `loss_fn(layer(inputs))` for each trainable weight.

    Returns a dict mapping `weight.path` to a NumPy array. The default loss
    is the sum of squared outputs.
    """
    loss_fn = loss_fn or (lambda outputs: keras.ops.sum(outputs**2))
    weights = layer.trainable_weights
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(layer(inputs))
        grads = tape.gradient(loss, [w.value for w in weights])
    elif BACKEND == "jax":
        import jax

        values = [w.value for w in weights]
        others = [w.value for w in layer.non_trainable_weights]

        def loss_of(trainable):
            outputs, _ = layer.stateless_call(trainable, others, inputs)
            return loss_fn(outputs)

        grads = jax.grad(loss_of)(values)
    elif BACKEND == "torch":
        loss = loss_fn(layer(inputs))
        grads = __import__("torch").autograd.grad(
            loss, [w.value for w in weights], allow_unused=True
        )
    else:
        raise NotImplementedError(BACKEND)
    return {
        w.path: (
            np.zeros(w.shape) if g is None else keras.ops.convert_to_numpy(g)
        )
        for w, g in zip(weights, grads, strict=True)
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
    if BACKEND != "torch" or str(keras.ops.zeros(()).device) != "meta":
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
