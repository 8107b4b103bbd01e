"""The layer used from PyTorch code, as the guide page "Using the layer from
PyTorch code" (docs/guide/pytorch.md) describes it: in-process on the torch
backend, and the page's example in a torch subprocess (once)."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import BACKEND

from conv_self_attention import SelfAttention2D

GUIDE = (
    pathlib.Path(__file__).resolve().parents[1] / "docs/guide/pytorch.md"
)
torch_only = pytest.mark.skipif(
    BACKEND != "torch", reason="torch backend only"
)


def make_layer():
    layer = SelfAttention2D(spectral_norm=True, gamma=0.5, name="attention")
    inputs = np.random.default_rng(0).normal(size=(2, 6, 6, 8))
    inputs = inputs.astype("float32")
    layer(inputs)  # builds it
    return layer, inputs


@torch_only
def test_layer_is_a_module_holding_every_weight():
    import torch

    layer, _ = make_layer()
    assert isinstance(layer, torch.nn.Module)
    parameters = list(layer.parameters())
    # 4 kernels and gamma trainable; 4 spectral-norm vectors `u` not.
    assert len(parameters) == len(layer.weights) == 9
    assert sum(p.requires_grad for p in parameters) == 5
    assert {id(p) for p in parameters} == {id(w.value) for w in layer.weights}


@torch_only
def test_spectral_norm_updates_only_with_training_true():
    layer, inputs = make_layer()
    u = layer.query_projection.u
    before = u.numpy().copy()
    layer.train()  # torch's flag: Keras' `training` does not read it
    layer(inputs)
    np.testing.assert_array_equal(u.numpy(), before)
    layer(inputs, training=True)
    assert np.abs(u.numpy() - before).max() > 1e-3


@torch_only
def test_backward_reaches_every_trainable_parameter():
    import torch

    layer, inputs = make_layer()
    outputs = layer(keras.ops.convert_to_tensor(inputs), training=True)
    (outputs**2).sum().backward()
    for parameter in layer.parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None
            assert torch.count_nonzero(parameter.grad) > 0
        else:
            assert parameter.grad is None


# Runs after the guide's example: one training step, then its state dict
# loaded into a second model built after an unnamed layer (which takes the
# automatic name), and each claim checked.
ROUND_TRIP = """
import io
attention = model.attention
before = attention.query_projection.u.numpy().copy()
images = torch.randn(4, 3, 16, 16, device=device)
model.train()
loss = model(images).square().mean()
optimizer.zero_grad()
loss.backward()
optimizer.step()
assert abs(attention.query_projection.u.numpy() - before).max() > 1e-3
buffer = io.BytesIO()
torch.save(model.state_dict(), buffer)
buffer.seek(0)
SelfAttention2D()(torch.zeros(1, 4, 4, 8))
other = Discriminator().to(device)
other(torch.zeros(1, 3, 16, 16, device=device))
other.load_state_dict(torch.load(buffer), strict=True)
model.eval()
other.eval()
assert torch.equal(model(images), other(images))
for mine, theirs in zip(model.state_dict().values(),
                        other.state_dict().values(), strict=True):
    assert torch.equal(mine, theirs)
print("round trip ok")
"""


def guide_torch_example():
    return re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)


def run_torch_example(code, tmp_path, **env):
    env = dict(os.environ, KERAS_BACKEND="torch", **env)
    completed = subprocess.run(
        [sys.executable, "-c", guide_torch_example() + code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # a hang; loaded machines are slow
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.once
def test_guide_torch_example_trains_and_round_trips(tmp_path):
    assert "round trip ok" in run_torch_example(ROUND_TRIP, tmp_path)


# Every module and input on Keras' device, and an output there.
ON_KERAS_DEVICE = """
assert device.type == "meta"
assert {p.device.type for p in model.parameters()} == {"meta"}
assert model(torch.zeros(2, 3, 16, 16, device=device)).device.type == "meta"
print("devices ok")
"""


@pytest.mark.once
def test_guide_torch_example_follows_keras_device(tmp_path):
    # Keras' default device forced away from torch's (the CPU): "meta"
    # tensors have shapes and devices but no data, so this runs on any
    # machine, as a CUDA, MPS or XPU default would.
    stdout = run_torch_example(
        ON_KERAS_DEVICE, tmp_path, KERAS_TORCH_DEVICE="meta"
    )
    assert "devices ok" in stdout
