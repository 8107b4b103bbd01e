"""The layer inside a user's `torch.nn.Module` (docs/guide/pytorch.md),
through torch's own exporters, `torch.export.export` and
`torch.onnx.export(..., dynamo=True)`, with a dynamic batch: each artifact
runs in its runtime (`export_runner.py`, a process without Keras or the
package) with the module's output at batch 2 and 1."""

import importlib.util
import os

import keras
import numpy as np
import pytest
from export_checks import RELATIVE_TOLERANCE
from export_runner import run_runtime
from test_export import guide_blocks

from conv_self_attention import SelfAttention2D
from conv_self_attention import use_attention_kernel

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="torch modules"
)
# `auto` (`fused` on a CPU) and `chunked`, which once gave a batch-2-only
# ONNX file here; `dense` traces as plainly as `fused`.
KERNELS = ("auto", "chunked")


def _discriminator():
    import torch

    class Discriminator(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 32, 3, padding=1)
            self.attention = SelfAttention2D(
                spectral_norm=True, gamma=1.0, data_format="channels_first",
                name="attention",
            )
            self.head = torch.nn.Linear(32, 1)

        def forward(self, images):
            x = torch.relu(self.conv(images))
            x = self.attention(x, training=self.training)
            return self.head(x.mean(dim=(2, 3)))

    return Discriminator


def _export(kernel, folder):
    import torch

    keras.utils.set_random_seed(0)
    model = _discriminator()()
    model(torch.zeros(1, 3, 16, 16))
    model.eval()
    images = torch.randn(
        2, 3, 16, 16, generator=torch.Generator().manual_seed(0)
    )
    inputs = {"batch2": images.numpy(), "batch1": images[:1].numpy()}
    np.savez(folder / f"{kernel}-inputs.npz", **inputs)
    # The guide's block exports `module` with torch's exporters.
    (block,) = guide_blocks("# torch.nn.Module:")
    namespace = {"module": model, "images": images}
    with use_attention_kernel(kernel), torch.no_grad():
        expected = {
            name: model(torch.from_numpy(value)).numpy()
            for name, value in inputs.items()
        }
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            exec(compile(block, "docs/guide/deploying.md", "exec"), namespace)
        finally:
            os.chdir(cwd)
    for suffix in (".pt2", ".onnx"):
        os.replace(
            folder / f"discriminator{suffix}", folder / f"{kernel}{suffix}"
        )
    assert kernel == "auto" or model.attention.last_kernel[0] == kernel
    return expected


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`{(runtime, kernel): (outputs, expected)}`."""
    for module in ("onnxscript", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (the `export` extra)")
    if str(keras.ops.zeros(()).device) != "cpu":
        # The runner runs artifacts on the CPU; a module on a GPU would be
        # exported with its device in the graph.
        pytest.skip("exports run on the CPU here; Keras uses a GPU")
    folder = tmp_path_factory.mktemp("torch-module")
    expected = {kernel: _export(kernel, folder) for kernel in KERNELS}
    results = {}
    for runtime, suffix in (("torch", ".pt2"), ("onnx", ".onnx")):
        entries = [
            {
                "artifact": str(folder / f"{kernel}{suffix}"),
                "inputs": str(folder / f"{kernel}-inputs.npz"),
                "outputs": str(folder / f"{kernel}-{runtime}.npz"),
            }
            for kernel in KERNELS
        ]
        report = run_runtime(runtime, entries, folder)
        assert report["imported"] == [], report
        for kernel, entry in zip(KERNELS, entries, strict=True):
            with np.load(entry["outputs"]) as outputs:
                produced = {key: outputs[key] for key in outputs.files}
            results[runtime, kernel] = (produced, expected[kernel])
    return results


@pytest.mark.parametrize("runtime", ("torch", "onnx"))
@pytest.mark.parametrize("kernel", KERNELS)
def test_torch_exporters_match_the_module(exported, runtime, kernel):
    produced, expected = exported[runtime, kernel]
    assert "error" not in produced, str(produced.get("error"))
    for key, want in expected.items():
        bound = RELATIVE_TOLERANCE * np.abs(want).max()
        np.testing.assert_allclose(
            produced[key], want, rtol=0, atol=bound, err_msg=key
        )
