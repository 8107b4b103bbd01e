"""Weight import from the PyTorch BigGAN attention block.

The PyTorch side is a small module written here from the published
equations (SAGAN, Zhang et al. 2018, in BigGAN's form: 1x1 convolutions
theta/phi/g/o, 2x2 max-pooling of phi and g, softmax with scale 1,
`y = x + gamma * o(...)`), with random weights.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import to_numpy

from conv_self_attention import SelfAttention2D
from conv_self_attention.convert import load_biggan_attention

torch = pytest.importorskip("torch")
functional = torch.nn.functional

CHANNELS = 16


class PowerIterationConv(torch.nn.Module):
    """A 1x1 convolution divided by sigma from one power iteration.

    Spectral normalization as in Miyato et al. (2018), Algorithm 1, keeping
    the buffers under BigGAN-PyTorch's names: `u0` (left singular vector
    estimate, updated only in training) and `sv0` (the last training sigma).
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.weight = torch.nn.Parameter(
            torch.randn(out_channels, in_channels, 1, 1)
        )
        self.register_buffer("u0", torch.randn(1, out_channels))
        self.register_buffer("sv0", torch.ones(1))

    def forward(self, x):
        matrix = self.weight.flatten(1)
        with torch.no_grad():
            v = functional.normalize(self.u0 @ matrix, dim=1)
            u = functional.normalize(v @ matrix.T, dim=1)
        sigma = (u @ matrix @ v.T).squeeze()
        if self.training:
            with torch.no_grad():
                self.u0.copy_(u)
                self.sv0.copy_(sigma)
        return functional.conv2d(x, self.weight / sigma)


def plain_conv(in_channels, out_channels, bias=False):
    return torch.nn.Conv2d(in_channels, out_channels, 1, bias=bias)


CONV_FORMS = {
    "plain": plain_conv,
    "biased": lambda i, o: plain_conv(i, o, bias=True),
    "biggan_spectral_norm": PowerIterationConv,
    "torch_spectral_norm": lambda i, o: torch.nn.utils.spectral_norm(
        plain_conv(i, o)
    ),
    "torch_parametrized_spectral_norm": (
        lambda i, o: torch.nn.utils.parametrizations.spectral_norm(
            plain_conv(i, o)
        )
    ),
}


class PaperAttention(torch.nn.Module):
    """The BigGAN attention block, from the equations, on `(B, C, H, W)`."""

    def __init__(self, channels, make_conv):
        super().__init__()
        self.theta = make_conv(channels, channels // 8)
        self.phi = make_conv(channels, channels // 8)
        self.g = make_conv(channels, channels // 2)
        self.o = make_conv(channels // 2, channels)
        self.gamma = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        batch, _, height, width = x.shape
        query = self.theta(x).flatten(2)  # (B, C/8, N), row-major positions
        key = functional.max_pool2d(self.phi(x), 2).flatten(2)  # (B, C/8, M)
        value = functional.max_pool2d(self.g(x), 2).flatten(2)  # (B, C/2, M)
        scores = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (B,N,M)
        attended = (value @ scores.transpose(1, 2)).reshape(
            batch, -1, height, width
        )
        return x + self.gamma * self.o(attended)


def trained_module(form, seed=0):
    """A module whose spectral-norm state went through training steps.

    After the power iterations the weights move once more (as after an
    optimizer step), so BigGAN's logged `sv0` is stale, as in a checkpoint.
    """
    torch.manual_seed(seed)
    module = PaperAttention(CHANNELS, CONV_FORMS[form])
    with torch.no_grad():
        module.gamma.fill_(0.7)
        for parameter in module.parameters():
            parameter.mul_(2.0)
    module.train()
    inputs = torch.randn(2, CHANNELS, 4, 4)
    for _ in range(3):
        module(inputs)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return module.eval()


def torch_outputs(module, inputs):
    with torch.no_grad():
        return module(torch.from_numpy(inputs)).numpy()


def keras_outputs(layer, inputs_nchw):
    if layer.data_format == "channels_first":
        return to_numpy(layer(inputs_nchw))
    outputs = to_numpy(layer(np.transpose(inputs_nchw, (0, 2, 3, 1))))
    return np.transpose(outputs, (0, 3, 1, 2))


def random_inputs(height, width, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, CHANNELS, height, width)).astype("float32")


@pytest.mark.parametrize("form", sorted(CONV_FORMS))
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_matches_torch_module(form, data_format):
    module = trained_module(form)
    layer = load_biggan_attention(module.state_dict(), data_format=data_format)
    for height, width in [(4, 6), (8, 8)]:
        inputs = random_inputs(height, width)
        np.testing.assert_allclose(
            keras_outputs(layer, inputs),
            torch_outputs(module, inputs),
            rtol=1e-5,
            atol=1e-5,
        )


def test_layer_settings():
    module = trained_module("plain")
    layer = load_biggan_attention(module.state_dict(), name="attention")
    assert isinstance(layer, SelfAttention2D) and layer.built
    assert layer.name == "attention"
    assert layer.pool_size == (2, 2) and layer.num_heads == 1
    assert not layer.spectral_norm and not layer.use_scale
    assert layer.resolved_key_channels == CHANNELS // 8
    assert layer.resolved_value_channels == CHANNELS // 2
    np.testing.assert_allclose(
        to_numpy(layer.gamma.value), module.gamma.item(), rtol=1e-6
    )


def test_sv0_is_not_used():
    # The stale logged sigma must not change the imported layer.
    state = numpy_state(trained_module("biggan_spectral_norm").state_dict())
    changed = dict(state, **{"theta.sv0": np.array([123.0])})
    inputs = random_inputs(4, 4)
    first = load_biggan_attention(state, data_format="channels_first")
    second = load_biggan_attention(changed, data_format="channels_first")
    np.testing.assert_array_equal(
        keras_outputs(first, inputs), keras_outputs(second, inputs)
    )


def numpy_state(state_dict):
    return {key: value.numpy() for key, value in state_dict.items()}


def test_numpy_state_dict_with_prefix():
    module = trained_module("biggan_spectral_norm")
    state = {
        f"blocks.2.1.{key}": value
        for key, value in numpy_state(module.state_dict()).items()
    }
    state["blocks.0.0.conv1.weight"] = np.zeros((3, 3, 1, 1))
    layer = load_biggan_attention(
        state, prefix="blocks.2.1", data_format="channels_first"
    )
    inputs = random_inputs(6, 4)
    np.testing.assert_allclose(
        keras_outputs(layer, inputs),
        torch_outputs(module, inputs),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("prebuilt", [False, True])
def test_fills_given_layer(data_format, prebuilt):
    module = trained_module("torch_spectral_norm")
    layer = SelfAttention2D(pool_size=2, data_format=data_format)
    if prebuilt:
        shape = (CHANNELS, 4, 4) if data_format == "channels_first" else (
            4,
            4,
            CHANNELS,
        )
        layer.build((None, *shape))
    assert load_biggan_attention(module.state_dict(), layer) is layer
    inputs = random_inputs(4, 4)
    np.testing.assert_allclose(
        keras_outputs(layer, inputs),
        torch_outputs(module, inputs),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.once
def test_numpy_input_needs_no_torch():
    # Block `import torch` in a fresh process: NumPy state dicts must load.
    script = textwrap.dedent(
        """
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, BlockTorch())
        import numpy as np
        from conv_self_attention.convert import load_biggan_attention
        rng = np.random.default_rng(0)
        state = {
            "theta.weight": rng.normal(size=(2, 16, 1, 1)),
            "theta.u0": rng.normal(size=(1, 2)),
            "theta.sv0": np.ones(1),
            "phi.weight": rng.normal(size=(2, 16, 1, 1)),
            "g.weight": rng.normal(size=(8, 16, 1, 1)),
            "o.weight": rng.normal(size=(16, 8, 1, 1)),
            "gamma": np.array(0.5),
        }
        layer = load_biggan_attention(state)
        print(layer(np.ones((1, 4, 4, 16), "float32")).shape)
        print("torch imported:", "torch" in sys.modules)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(1, 4, 4, 16)" in result.stdout
    assert "torch imported: False" in result.stdout


def small_state(**changes):
    rng = np.random.default_rng(0)
    state = {
        "theta.weight": rng.normal(size=(2, 16, 1, 1)),
        "phi.weight": rng.normal(size=(2, 16, 1, 1)),
        "g.weight": rng.normal(size=(8, 16, 1, 1)),
        "o.weight": rng.normal(size=(16, 8, 1, 1)),
        "gamma": np.array(0.5),
    }
    state.update(changes)
    return {key: value for key, value in state.items() if value is not None}


BAD_STATES = [
    ("missing_gamma", small_state(gamma=None), ValueError, "gamma"),
    (
        "missing_weight",
        small_state(**{"g.weight": None}),
        ValueError,
        "g.weight",
    ),
    (
        "unexpected_name",
        small_state(**{"theta.scale": np.ones(1)}),
        ValueError,
        "theta.scale",
    ),
    (
        "3x3_kernel",
        small_state(**{"theta.weight": np.ones((2, 16, 3, 3))}),
        ValueError,
        "theta.weight",
    ),
    (
        "phi_channels",
        small_state(**{"phi.weight": np.ones((4, 16, 1, 1))}),
        ValueError,
        "phi",
    ),
    (
        "o_channels",
        small_state(**{"o.weight": np.ones((12, 8, 1, 1))}),
        ValueError,
        "o",
    ),
    (
        "some_biases",
        small_state(**{"theta.bias": np.ones(2)}),
        ValueError,
        "bias",
    ),
    (
        "u0_size",
        small_state(**{"theta.u0": np.ones((1, 3))}),
        ValueError,
        "theta.u0",
    ),
    (
        "vector_gamma",
        small_state(gamma=np.ones(3)),
        ValueError,
        "gamma",
    ),
    (
        "string_value",
        small_state(**{"phi.weight": "weights"}),
        TypeError,
        "phi.weight",
    ),
]


@pytest.mark.parametrize(
    "state, error, text",
    [case[1:] for case in BAD_STATES],
    ids=[case[0] for case in BAD_STATES],
)
def test_bad_state_dict(state, error, text):
    with pytest.raises(error, match=text):
        load_biggan_attention(state)


def test_prefix_needed_for_a_whole_model():
    state = {f"blocks.2.1.{key}": value for key, value in small_state().items()}
    with pytest.raises(ValueError, match="prefix"):
        load_biggan_attention(state)
    with pytest.raises(ValueError, match="prefix"):
        load_biggan_attention(state, prefix="blocks.9.")


def test_state_dict_type():
    with pytest.raises(TypeError, match="state_dict"):
        load_biggan_attention([("gamma", 0.5)])


BAD_LAYERS = [
    ("not_a_layer", {}, "dense", TypeError, "layer"),
    ("heads", {"pool_size": 2, "num_heads": 2}, None, ValueError, "num_heads"),
    ("no_pool", {}, None, ValueError, "pool_size"),
    (
        "scale",
        {"pool_size": 2, "use_scale": True},
        None,
        ValueError,
        "use_scale",
    ),
    (
        "spectral_norm",
        {"pool_size": 2, "spectral_norm": True},
        None,
        ValueError,
        "spectral_norm",
    ),
    ("bias", {"pool_size": 2, "use_bias": True}, None, ValueError, "use_bias"),
    (
        "activation",
        {"pool_size": 2, "activation": "relu"},
        None,
        ValueError,
        "activation",
    ),
    ("filters", {"pool_size": 2, "filters": 8}, None, ValueError, "filters"),
    (
        "key_channels",
        {"pool_size": 2, "key_channels": 4},
        None,
        ValueError,
        "key_channels",
    ),
    (
        "data_format_with_layer",
        {"pool_size": 2},
        "channels_last",
        ValueError,
        "data_format",
    ),
]


@pytest.mark.parametrize(
    "kwargs, extra, error, text",
    [case[1:] for case in BAD_LAYERS],
    ids=[case[0] for case in BAD_LAYERS],
)
def test_incompatible_layer(kwargs, extra, error, text):
    if extra == "dense":
        layer, extra = object(), None
    else:
        layer = SelfAttention2D(**kwargs)
    with pytest.raises(error, match=text):
        load_biggan_attention(small_state(), layer, data_format=extra)


def test_wrong_input_channels_for_built_layer():
    layer = SelfAttention2D(pool_size=2)
    layer.build((None, 4, 4, 32))
    with pytest.raises(ValueError, match="query_projection"):
        load_biggan_attention(small_state(), layer)
