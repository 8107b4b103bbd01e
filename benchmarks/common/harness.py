"""Timing helpers shared by the benchmark scripts (one backend per process).

`make_step(layer, inputs, mode)` returns a no-argument callable that runs
one forward pass (`"fwd"`, inference: nothing kept for a backward pass) or
one forward and backward pass (`"fwd+bwd"`, gradients of a scalar loss with
respect to the inputs and every trainable weight), compiled the way users
of each backend run it: `tf.function` on TensorFlow, `jax.jit` on JAX,
eager on torch. The callable blocks until the result is computed.
"""

import resource
import sys
import time

import keras
import numpy as np

# Cases that are our layer with this `attention_implementation`.
IMPLEMENTATIONS = ("auto", "dense", "chunked", "fused")


def build_case(case, channels, gamma=0.1):
    """The layer benchmarked as `case` (`naive`, `mha`, or one of
    `IMPLEMENTATIONS`) for maps of `channels` channels: q/k `channels // 8`
    and v `channels // 2` wide, in the current global dtype policy.
    `gamma` (the attention term's initial weight; not used by `mha`)
    changes no timing."""
    import baselines

    from conv_self_attention import SelfAttention2D

    key_channels, value_channels = channels // 8, channels // 2
    if case in IMPLEMENTATIONS:
        return SelfAttention2D(
            key_channels=key_channels,
            value_channels=value_channels,
            gamma=gamma,
            attention_implementation=case,
        )
    if case == "naive":
        return baselines.NaiveSelfAttention2D(
            key_channels, value_channels, gamma=gamma
        )
    if case == "mha":
        return baselines.MultiHeadSpatialAttention(key_channels, value_channels)
    raise ValueError(f"Unknown case: {case!r}")


def peak_rss_bytes():
    """Peak resident memory of this process so far."""
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def make_step(layer, inputs, mode):
    """A callable running one `mode` step of `layer` on `inputs`."""
    if mode not in ("fwd", "fwd+bwd"):
        raise ValueError(
            f"Expected mode 'fwd' or 'fwd+bwd'. Received: mode={mode!r}"
        )
    builders = {
        "tensorflow": _tensorflow_step,
        "jax": _jax_step,
        "torch": _torch_step,
    }
    backend = keras.backend.backend()
    if backend not in builders:
        raise ValueError(f"Unsupported backend for benchmarks: {backend!r}")
    inputs = [keras.ops.convert_to_tensor(x) for x in inputs]
    if not layer.built:
        layer(*inputs)
    return builders[backend](layer, inputs, mode == "fwd+bwd")


def _loss(outputs):
    # A squared loss gives every output element a different gradient.
    return keras.ops.sum(keras.ops.square(keras.ops.cast(outputs, "float32")))


def _tensorflow_step(layer, inputs, backward):
    import tensorflow as tf

    @tf.function
    def forward(*inputs):
        return _loss(layer(*inputs))

    @tf.function
    def forward_backward(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = _loss(layer(*inputs))
        return tape.gradient(loss, [*inputs, *layer.trainable_variables])

    step = forward_backward if backward else forward
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), step(*inputs))


def _jax_step(layer, inputs, backward):
    import jax

    step, arguments = jax_step_parts(layer, inputs, backward)
    return lambda: jax.block_until_ready(step(*arguments))


def jax_step_parts(layer, inputs, backward):
    """The jitted JAX step of `layer` and the arguments to call it with.
    Callers that need the compiled executable (for its memory analysis)
    lower and compile it themselves: `step.lower(*arguments).compile()`."""
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    frozen = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, inputs):
        outputs, _ = layer.stateless_call(trainable, frozen, *inputs)
        return _loss(outputs)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)) if backward else loss)
    return step, (trainable, list(inputs))


def _torch_step(layer, inputs, backward):
    import torch

    def forward():
        with torch.no_grad():
            return _loss(layer(*inputs)).item()

    def forward_backward():
        leaves = [x.detach().requires_grad_(True) for x in inputs]
        layer.zero_grad(set_to_none=True)
        _loss(layer(*leaves)).backward()

    return forward_backward if backward else forward


def time_step(step, repeats=3, min_seconds=0.0):
    """Runs `step` once to compile/warm up, then `repeats` timed times
    (more while the total is under `min_seconds`). Returns the list of
    seconds per call; callers report the minimum, the least noisy
    estimate on a shared machine."""
    start = time.perf_counter()
    step()
    warmup = time.perf_counter() - start
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return warmup, times


class KernelCore(keras.layers.Layer):
    """The attention core alone, as a weightless layer taking q, k, v."""

    def __init__(self, implementation, chunk_size=None, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.implementation = implementation
        self.chunk_size = chunk_size
        self.scale = scale

    def call(self, query, key, value):
        from conv_self_attention import kernels

        return kernels.attention(
            query,
            key,
            value,
            scale=self.scale,
            implementation=self.implementation,
            chunk_size=self.chunk_size,
        )


def core_inputs(batch, num_queries, num_keys, heads, key_width, value_width):
    """Random float32 q, k, v in the kernels' `(B, N, h, d)` layout."""
    rng = np.random.default_rng(0)
    shapes = (
        (batch, num_queries, heads, key_width),
        (batch, num_keys, heads, key_width),
        (batch, num_keys, heads, value_width),
    )
    return [rng.normal(size=shape).astype("float32") for shape in shapes]
