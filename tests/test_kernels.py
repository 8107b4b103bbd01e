"""Every attention kernel equals the dense one, in values and gradients."""

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import gradients
from helpers import skip_without_values
from helpers import to_numpy

from conv_self_attention import kernels
from conv_self_attention.kernels import auto
from conv_self_attention.kernels import chunked
from conv_self_attention.kernels import device
from conv_self_attention.kernels import plan as kernel_plan

EXACT_IMPLEMENTATIONS = ("chunked", "fused", "auto")
# `auto` resolves to one of the others, so it runs on fewer cases.
AUTO_CASES = ("odd_length", "pooled_keys")

# (batch, N, M, heads, key width, value width, chunk size)
CASES = {
    "odd_length": (2, 37, 37, 1, 3, 5, 8),
    "pooled_keys": (2, 35, 9, 1, 4, 6, 16),
    "several_heads": (1, 30, 12, 3, 2, 4, 7),
    "chunk_larger_than_length": (2, 10, 10, 2, 2, 3, 64),
    "default_chunk": (1, 21, 21, 1, 2, 8, None),
    "key_wider_than_value": (1, 19, 19, 1, 6, 2, 4),
}


def make_inputs(case, seed=0, magnitude=1.0):
    batch, length, keys, heads, key_width, value_width, _ = case
    rng = np.random.default_rng(seed)
    shapes = (
        (batch, length, heads, key_width),
        (batch, keys, heads, key_width),
        (batch, keys, heads, value_width),
        (batch, length, heads, value_width),
    )
    return [magnitude * rng.normal(size=s).astype("float32") for s in shapes]


def outputs_and_gradients(fn, inputs, cotangent):
    """`fn(q, k, v)` and the gradients of `sum(fn(q, k, v) * cotangent)`
    for q, k and v; `None` on `meta`, after checking the output's shape."""

    def loss(out):
        cotangents = keras.ops.convert_to_tensor(cotangent)
        return keras.ops.sum(keras.ops.cast(out, "float32") * cotangents)

    out, grads, _ = gradients(fn, inputs, loss)
    assert tuple(out.shape) == cotangent.shape
    if grads is None:
        return None
    return out, grads


def kernel(implementation, chunk_size=None, scale=1.0):
    return lambda q, k, v: kernels.attention(
        q, k, v, scale=scale, implementation=implementation,
        chunk_size=chunk_size,
    )


@pytest.mark.meta_device
@pytest.mark.parametrize(
    "implementation, case_name",
    [(name, case) for name in ("chunked", "fused") for case in sorted(CASES)]
    + [("auto", case) for case in AUTO_CASES],
)
def test_matches_dense_values_and_gradients(implementation, case_name):
    case = CASES[case_name]
    *inputs, cotangent = make_inputs(case)
    scale = 0.5 if case_name == "several_heads" else 1.0
    expected = outputs_and_gradients(
        kernel("dense", scale=scale), inputs, cotangent
    )
    actual = outputs_and_gradients(
        kernel(implementation, case[-1], scale), inputs, cotangent
    )
    skip_without_values()
    np.testing.assert_allclose(actual[0], expected[0], atol=2e-5, rtol=1e-4)
    for got, want in zip(actual[1], expected[1], strict=True):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)


@pytest.mark.meta_device
@pytest.mark.gpu_specific
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("implementation", ("dense", "chunked", "fused"))
def test_half_precision_is_finite_and_close(implementation, dtype):
    """Logits of this size (~500) overflow float16's exp, not float32's."""
    case = CASES["pooled_keys"]
    *inputs, cotangent = make_inputs(case, magnitude=5.0)
    with keras.device("cpu:0"):  # rounded where values can be read
        half = [keras.ops.cast(x, dtype) for x in inputs]
        half_values = [to_numpy(keras.ops.cast(x, "float32")) for x in half]
    actual = outputs_and_gradients(
        lambda q, k, v: kernels.attention(
            keras.ops.cast(q, dtype), keras.ops.cast(k, dtype),
            keras.ops.cast(v, dtype), scale=1.0,
            implementation=implementation, chunk_size=case[-1],
        ),
        half_values,
        cotangent,
    )
    expected = outputs_and_gradients(kernel("dense"), half_values, cotangent)
    skip_without_values()
    out, grads = actual
    assert np.isfinite(out.astype("float32")).all()
    np.testing.assert_allclose(
        out.astype("float32"), expected[0], atol=0.05, rtol=0.02
    )
    for grad in grads:
        assert np.isfinite(grad.astype("float32")).all()


@pytest.mark.meta_device
@pytest.mark.gpu_specific
@pytest.mark.skipif(BACKEND == "tensorflow", reason="no flash kernel")
@pytest.mark.parametrize("implementation", ["fused", "auto"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_compute_dtype_flash_path_forced_on(monkeypatch, kernel_calls,
                                            implementation, dtype):
    """What `auto` and `fused` run on an NVIDIA GPU under mixed precision,
    with flash eligibility forced on wherever this runs (`meta` standing
    in for a GPU): the backend's fused kernel fed q, k, v in the compute
    dtype, on Keras' device, forward and backward, close to `dense`."""
    if BACKEND == "jax" and dtype == "float16" and (
            device.find_device(keras.ops.zeros(())).platform != "gpu"):
        pytest.skip("JAX's CPU dot_product_attention rejects float16 "
                    "('F16_F16_F32'): `auto` never feeds it float16 there")
    for module in (kernel_plan, auto):  # `fused`'s plan, `auto`'s rule
        monkeypatch.setattr(module, "flash_eligible", lambda **_: True)
    case = CASES["pooled_keys"]
    *inputs, cotangent = make_inputs(case)
    with keras.device("cpu:0"):  # rounded where values can be read
        rounded = [to_numpy(keras.ops.cast(keras.ops.cast(x, dtype),
                                           "float32")) for x in inputs]

    def flash(query, key, value):
        out = kernels.attention(
            *(keras.ops.cast(x, dtype) for x in (query, key, value)),
            scale=1.0, implementation=implementation,
        )
        assert keras.backend.standardize_dtype(out.dtype) == dtype
        return out

    actual = outputs_and_gradients(flash, rounded, cotangent)
    here = device.find_device(keras.ops.zeros(())).platform
    [(name, options)] = kernel_calls
    assert (name, options["flash"], options["platform"]) == (
        "fused", True, here)
    expected = outputs_and_gradients(kernel("dense"), rounded, cotangent)
    skip_without_values()
    np.testing.assert_allclose(
        actual[0].astype("float32"), expected[0], atol=0.05, rtol=0.02
    )
    for grad in actual[1]:
        assert np.isfinite(grad.astype("float32")).all()


@pytest.mark.meta_device
def test_output_dtype_is_value_dtype():
    *inputs, _ = make_inputs(CASES["odd_length"])
    query, key, value = (keras.ops.cast(x, "float16") for x in inputs)
    for implementation in ("dense",) + EXACT_IMPLEMENTATIONS:
        out = kernels.attention(
            query, key, value, scale=1.0, implementation=implementation
        )
        assert keras.backend.standardize_dtype(out.dtype) == "float16"


@pytest.mark.parametrize("implementation", ("dense",) + EXACT_IMPLEMENTATIONS)
def test_return_scores_uses_dense(implementation):
    *inputs, _ = make_inputs(CASES["several_heads"])
    out, scores = kernels.attention(
        *inputs, scale=1.0, implementation=implementation, return_scores=True
    )
    batch, length, keys, heads = 1, 30, 12, 3
    assert tuple(scores.shape) == (batch, heads, length, keys)
    assert keras.backend.standardize_dtype(scores.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=1e-5)
    expected = kernels.attention(*inputs, scale=1.0, implementation="dense")
    np.testing.assert_allclose(to_numpy(out), to_numpy(expected), atol=1e-6)


def test_invalid_arguments_name_argument_and_value():
    *inputs, _ = make_inputs(CASES["odd_length"])
    with pytest.raises(ValueError, match="attention_implementation='flash'"):
        kernels.attention(*inputs, scale=1.0, implementation="flash")
    for bad in (0, -3, 2.5, True, "64"):
        with pytest.raises(ValueError, match="chunk_size="):
            kernels.attention(*inputs, scale=1.0, chunk_size=bad)


@pytest.mark.meta_device
@pytest.mark.gpu_specific
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("side", [8, 40])
def test_auto_runs_the_rule_of_this_device(kernel_calls, side, dtype):
    """`auto` runs what the pure rule names for the device the inputs are
    on, and `fused` feeds the compute dtype only where a flash kernel is
    eligible there."""
    case = (2, side * side, side * side, 1, 4, 8, None)
    *inputs, _ = make_inputs(case)
    inputs = [keras.ops.cast(x, dtype) for x in inputs]
    here = device.find_device(inputs[0])
    described = dict(
        backend=BACKEND, platform=here.platform,
        compute_capability=here.compute_capability, dtype=dtype,
        key_width=4, value_width=8,
    )
    kernels.attention(*inputs, scale=1.0, implementation="auto")
    expected = auto.select_implementation(
        num_queries=side * side, num_keys=side * side, batch_heads=2,
        **described,
    )
    assert [name for name, _ in kernel_calls] == [expected]
    kernel_calls.clear()
    kernels.attention(*inputs, scale=1.0, implementation="fused")
    flash = auto.flash_eligible(**described)
    [(name, options)] = kernel_calls
    assert (name, options["flash"], options["platform"]) == (
        "fused", flash, here.platform
    )
    kernel_calls.clear()
    kernels.attention(*inputs, scale=1.0, implementation="chunked")
    plan = chunked.plan_blocks(side * side, side * side, 2, 1, here.platform)
    [(name, options)] = kernel_calls
    assert (name, options["plan"], options["exporting"]) == (
        "chunked", plan, False
    )


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF tracing")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tensorflow_unknown_length_and_batch(jit_compile):
    import tensorflow as tf

    spec = [
        tf.TensorSpec((None, None, 2, 3)),
        tf.TensorSpec((None, None, 2, 3)),
        tf.TensorSpec((None, None, 2, 4)),
        tf.TensorSpec((None, None, 2, 4)),
    ]

    @tf.function(input_signature=spec, jit_compile=jit_compile)
    def loss_and_grads(query, key, value, cotangent):
        with tf.GradientTape() as tape:
            tape.watch([query, key, value])
            out = kernels.attention(
                query, key, value, scale=0.3, implementation="auto",
                chunk_size=8,
            )
            loss = tf.reduce_sum(out * cotangent)
        return out, tape.gradient(loss, [query, key, value])

    for length in (13, 16):
        case = (3, length, 5, 2, 3, 4, 8)
        *inputs, cotangent = make_inputs(case)
        out, grads = loss_and_grads(*inputs, cotangent)
        expected = outputs_and_gradients(
            kernel("dense", scale=0.3), inputs, cotangent
        )
        np.testing.assert_allclose(out.numpy(), expected[0], atol=2e-5)
        for got, want in zip(grads, expected[1], strict=True):
            np.testing.assert_allclose(got.numpy(), want, atol=5e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX tracing")
def test_jax_backward_never_holds_the_score_matrix():
    """No value in the traced fwd+bwd program has N x M elements."""
    import jax

    length, keys, chunk_size = 512, 512, 64
    case = (1, length, keys, 1, 4, 8, chunk_size)
    *inputs, cotangent = make_inputs(case)

    def loss(query, key, value):
        out = kernels.attention(
            query, key, value, scale=1.0, implementation="chunked",
            chunk_size=chunk_size,
        )
        return (out * cotangent).sum()

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(*inputs)
    sizes = [
        np.prod(var.aval.shape)
        for eqn in _all_equations(jaxpr.jaxpr)
        for var in eqn.outvars
    ]
    assert max(sizes) <= chunk_size * keys


def _all_equations(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                yield from _all_equations(inner)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX tracing")
def test_jax_jit_matches_eager():
    import jax

    *inputs, _ = make_inputs(CASES["odd_length"])
    fn = kernel("chunked", chunk_size=8)
    np.testing.assert_allclose(
        to_numpy(jax.jit(fn)(*inputs)), to_numpy(fn(*inputs)), atol=1e-6
    )


@pytest.mark.skipif(BACKEND != "torch", reason="torch autograd hooks")
@pytest.mark.parametrize("implementation", ["chunked", "fused"])
def test_torch_backward_never_saves_the_score_matrix(implementation):
    import torch

    length, keys, chunk_size = 512, 512, 64
    *inputs, _ = make_inputs((1, length, keys, 1, 4, 8, chunk_size))
    tensors = [
        keras.ops.convert_to_tensor(x).requires_grad_(True) for x in inputs
    ]
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = kernels.attention(
            *tensors, scale=1.0, implementation=implementation,
            chunk_size=chunk_size,
        )
    out.sum().backward()
    assert saved and max(saved) < length * keys
