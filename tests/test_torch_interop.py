"""The layer used from PyTorch code (torch backend only), as the README's
"Using the layer from PyTorch code" describes it."""

import keras
import numpy as np
import pytest

from conv_self_attention import SelfAttention2D

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="torch backend only"
)


def make_layer():
    layer = SelfAttention2D(spectral_norm=True, gamma=0.5, name="attention")
    inputs = np.random.default_rng(0).normal(size=(2, 6, 6, 8))
    inputs = inputs.astype("float32")
    layer(inputs)  # builds it
    return layer, inputs


def test_layer_is_a_module_holding_every_weight():
    import torch

    layer, _ = make_layer()
    assert isinstance(layer, torch.nn.Module)
    parameters = list(layer.parameters())
    # 4 kernels and gamma trainable; 4 spectral-norm vectors `u` not.
    assert len(parameters) == len(layer.weights) == 9
    assert sum(p.requires_grad for p in parameters) == 5
    assert {id(p) for p in parameters} == {id(w.value) for w in layer.weights}


def test_spectral_norm_updates_only_with_training_true():
    layer, inputs = make_layer()
    u = layer.query_projection.u
    before = u.numpy().copy()
    layer.train()  # torch's flag: Keras' `training` does not read it
    layer(inputs)
    np.testing.assert_array_equal(u.numpy(), before)
    layer(inputs, training=True)
    assert np.abs(u.numpy() - before).max() > 1e-3


def test_backward_reaches_every_trainable_parameter():
    import torch

    layer, inputs = make_layer()
    outputs = layer(torch.from_numpy(inputs), training=True)
    (outputs**2).sum().backward()
    for parameter in layer.parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None
            assert torch.count_nonzero(parameter.grad) > 0
        else:
            assert parameter.grad is None
