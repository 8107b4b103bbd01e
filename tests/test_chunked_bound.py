"""The chunked kernel keeps every block within the device budget at run
time, also when the batch is unknown at trace time: a small budget is
patched in, a large batch runs, and the blocks actually computed are read
back (their logits' shapes), with `layer.last_kernel` and the results."""

import importlib

import numpy as np
import pytest
from helpers import BACKEND
from helpers import to_numpy
from reference import reference_self_attention
from reference import relative_error

from conv_self_attention import SelfAttention2D
from conv_self_attention.kernels import chunked

# Logits per block: 128 queries x 256 keys x 2 heads of one image. The
# smallest whole-batch block, 32 queries, fits for 4 images (what a batch
# unknown at trace time once stood for), not for BATCH.
BUDGET = 2**16
BATCH = 24
SHAPE = (16, 16, 8)
CHUNK = BUDGET // (2 * 256)


@pytest.fixture
def small_budget(monkeypatch):
    for name in ("CPU_BLOCK_ELEMENTS", "ACCELERATOR_BLOCK_ELEMENTS"):
        monkeypatch.setattr(chunked, name, BUDGET)


def record_blocks(monkeypatch):
    """Shapes of the logits of every block the backend kernel computes."""
    module = importlib.import_module(chunked._BACKEND_MODULES[BACKEND])
    original = module._block_forward
    shapes = []

    def recorder(query, key, value):
        keys = key.shape[-1] if BACKEND == "tensorflow" else key.shape[-2]
        shapes.append((*query.shape[:-1], keys))
        return original(query, key, value)

    monkeypatch.setattr(module, "_block_forward", recorder)
    return shapes


def layers_and_inputs():
    """A chunked layer, a dense one with the same weights, a large batch."""
    chunked_layer, dense_layer = (
        SelfAttention2D(
            num_heads=2, gamma=1.0, attention_implementation=implementation
        )
        for implementation in ("chunked", "dense")
    )
    for layer in (chunked_layer, dense_layer):
        layer.build((None, *SHAPE))
    dense_layer.set_weights(chunked_layer.get_weights())
    x = np.random.default_rng(0).normal(size=(BATCH, *SHAPE))
    return chunked_layer, dense_layer, x.astype("float32")


def check(layer, dense_outputs, outputs, shapes, x):
    """One image per block, CHUNK queries, all of it within the budget."""
    assert layer.last_kernel[:2] == ("chunked", chunked.BlockPlan(CHUNK, True))
    assert shapes and all(None not in shape for shape in shapes)
    assert max(np.prod(shape) for shape in shapes) <= BUDGET
    assert {shape[0] for shape in shapes} == {1}
    expected, _ = reference_self_attention(layer, x)
    assert relative_error(to_numpy(outputs[0]), expected) < 1e-5
    # The outputs (and input gradients) of the dense kernel.
    for got, want in zip(outputs, dense_outputs, strict=True):
        assert relative_error(to_numpy(got), to_numpy(want)) < 1e-5


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF tracing")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tensorflow_unknown_batch(small_budget, monkeypatch, jit_compile):
    import tensorflow as tf

    def outputs_and_input_gradient(layer):
        @tf.function(
            input_signature=[tf.TensorSpec((None, *SHAPE))],
            jit_compile=jit_compile,
        )
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(y * y)
            return y, tape.gradient(loss, x)

        return run

    layer, dense_layer, x = layers_and_inputs()
    shapes = record_blocks(monkeypatch)
    outputs = outputs_and_input_gradient(layer)(x)
    check(layer, outputs_and_input_gradient(dense_layer)(x), outputs, shapes, x)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX shape polymorphism")
def test_jax_symbolic_batch(small_budget, monkeypatch):
    import jax
    from jax import export

    def outputs_and_input_gradient(layer, symbolic):
        def run(x):
            def loss(x):
                y = layer(x)
                return (y * y).sum(), y

            (_, y), grad = jax.value_and_grad(loss, has_aux=True)(x)
            return y, grad

        if not symbolic:
            return jax.jit(run)
        (batch,) = export.symbolic_shape("b")
        spec = jax.ShapeDtypeStruct((batch, *SHAPE), "float32")
        return export.export(jax.jit(run))(spec).call

    layer, dense_layer, x = layers_and_inputs()
    shapes = record_blocks(monkeypatch)
    outputs = outputs_and_input_gradient(layer, symbolic=True)(x)
    dense_outputs = outputs_and_input_gradient(dense_layer, False)(x)
    check(layer, dense_outputs, outputs, shapes, x)


def test_known_large_batch_goes_per_image(small_budget, monkeypatch):
    """Even the smallest whole-batch block is over the budget here."""
    layer, dense_layer, x = layers_and_inputs()
    if BACKEND == "torch":
        with TorchLogitsRecorder() as recorder:
            outputs = [layer(x)]
        shapes = recorder.shapes
    else:
        shapes = record_blocks(monkeypatch)
        outputs = [layer(x)]
    check(layer, [dense_layer(x)], outputs, shapes, x)


def test_explicit_chunk_is_honoured_past_the_budget(small_budget, monkeypatch):
    """Compiled where the backend compiles (TF: `jit_compile`, batch
    unknown, so one image per block; JAX: `jax.jit`)."""
    layer = SelfAttention2D(attention_implementation="chunked", chunk_size=64)
    x = np.zeros((BATCH, *SHAPE), "float32")
    layer.build(x.shape)
    if BACKEND == "torch":
        with TorchLogitsRecorder() as recorder:
            layer(x)
        shapes, per_image = recorder.shapes, False
    else:
        shapes = record_blocks(monkeypatch)
        if BACKEND == "tensorflow":
            import tensorflow as tf

            spec = [tf.TensorSpec((None, *SHAPE))]
            tf.function(layer, input_signature=spec, jit_compile=True)(x)
            per_image = True
        else:
            import jax

            jax.jit(layer)(x)
            per_image = False
    planned = chunked.BlockPlan(64, per_image)
    assert layer.last_kernel[:2] == ("chunked", planned)
    images = 1 if per_image else BATCH
    assert set(shapes) == {(images, 1, 64, SHAPE[0] * SHAPE[1])}


if BACKEND == "torch":
    import torch
    from torch.overrides import TorchFunctionMode

    class TorchLogitsRecorder(TorchFunctionMode):
        """Shapes of the (rows x M) products of torch's chunked kernel:
        every `torch.matmul` whose result has M columns."""

        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.matmul and out.shape[-1] == SHAPE[0] * SHAPE[1]:
                self.shapes.append(tuple(out.shape))
            return out


@pytest.mark.skipif(BACKEND != "torch", reason="torch.export")
def test_torch_export_holds_whole_batch_blocks_of_the_plan(small_budget):
    """Exported with a dynamic batch, blocks span the batch (a loop over
    images would fix it): the plan says so in `last_kernel`, and every
    block in the exported graph has the planned queries per block."""
    import torch

    layer, _, x = layers_and_inputs()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        _Wrapper(layer), (torch.from_numpy(x),),
        dynamic_shapes=({0: batch},),
    )
    planned = chunked.plan_blocks(256, 256, None, 2, "cpu", exporting=True)
    assert layer.last_kernel.blocks == planned == chunked.BlockPlan(
        CHUNK, False
    )
    assert layer.last_kernel.exporting
    blocks = [
        tuple(node.meta["val"].shape)
        for node in program.graph.nodes
        if node.target == torch.ops.aten.softmax.int
    ]
    assert len(blocks) == 256 // CHUNK
    for shape in blocks:
        assert not isinstance(shape[0], int)  # the symbolic batch
        assert tuple(shape[1:]) == (2, CHUNK, 256)
    out = program.module()(torch.from_numpy(x[:3]))
    assert relative_error(
        to_numpy(out), reference_self_attention(layer, x[:3])[0]
    ) < 1e-5


@pytest.mark.skipif(BACKEND != "jax", reason="JAX export form")
def test_jax_export_form_unrolls_whole_batch_blocks_of_the_plan(
    small_budget,
):
    """Within `traced_for_export` (what `export_model` enters), the blocks
    are unrolled, with no loop for an exporter to turn into an ONNX
    `Loop`, and span the symbolic batch as the plan says."""
    import jax
    from jax import export

    from conv_self_attention.kernels.device import traced_for_export

    layer, _, x = layers_and_inputs()
    (batch,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *SHAPE), "float32")
    with traced_for_export():
        jaxpr = jax.make_jaxpr(layer)(spec)
        exported = export.export(jax.jit(layer))(spec)
    assert layer.last_kernel.blocks == chunked.BlockPlan(CHUNK, False)
    assert layer.last_kernel.exporting
    text = str(jaxpr)
    assert "while[" not in text and "scan[" not in text
    logits = [
        tuple(eqn.outvars[0].aval.shape)
        for eqn in jaxpr.jaxpr.eqns
        if eqn.primitive.name == "dot_general"
        and eqn.outvars[0].aval.shape[-1] == 256
    ]
    assert len(logits) == 256 // CHUNK
    for shape in logits:
        assert not isinstance(shape[0], int)  # the symbolic batch
        assert tuple(shape[1:]) == (2, CHUNK, 256)
    out = exported.call(x[:3])
    assert relative_error(
        to_numpy(out), reference_self_attention(layer, x[:3])[0]
    ) < 1e-5


if BACKEND == "torch":
    import torch

    class _Wrapper(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x)
