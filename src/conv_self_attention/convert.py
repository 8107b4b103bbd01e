"""Weight import from the PyTorch BigGAN attention block.

BigGAN-PyTorch (Brock et al., 2018) ships the SAGAN attention block most
GAN code bases reuse: four bias-free 1x1 convolutions `theta`, `phi`, `g`
and `o` with `C // 8`, `C // 8`, `C // 2` and `C` output channels, `phi`
and `g` max-pooled by 2, a plain softmax (scale 1) and a learned scalar
`gamma`: `y = x + gamma * o(attention)`. That is `SelfAttention2D` with
`pool_size=2`, so its state dict can be loaded into our layer.
"""

import re
import sys

import numpy as np

from conv_self_attention.layers.self_attention import SelfAttention2D

# BigGAN convolution name -> our projection sub-layer.
PROJECTIONS = {
    "theta": "query_projection",
    "phi": "key_projection",
    "g": "value_projection",
    "o": "output_projection",
}
# Suffixes of `torch.nn.utils.spectral_norm` (old) and of
# `torch.nn.utils.parametrizations.spectral_norm` (new), per convolution.
TORCH_SPECTRAL_NORM_NAMES = (
    ("weight_orig", "weight_u", "weight_v"),
    (
        "parametrizations.weight.original",
        "parametrizations.weight.0._u",
        "parametrizations.weight.0._v",
    ),
)
# BigGAN-PyTorch's own spectral norm keeps `u0, u1, ...` and `sv0, ...`.
_BIGGAN_BUFFER = re.compile(r"^(u|sv)\d+$")
_EPSILON = 1e-12


def load_biggan_attention(
    state_dict, layer=None, *, prefix="", data_format=None, name=None
):
    """Loads a BigGAN-PyTorch `Attention` state dict into `SelfAttention2D`.

    The source block computes, on a `(B, C, H, W)` map `x`,
    `x + gamma * o(g_pooled @ softmax(theta^T @ phi_pooled)^T)` with bias-free
    1x1 convolutions and 2x2 max-pooling of `phi` and `g`. This is
    `SelfAttention2D(pool_size=2)` with one head, no scale, no activation,
    and key/value channels read from the weights (`C // 8` and `C // 2` in
    BigGAN). Both number the positions row-major, so a `"channels_first"`
    layer gives the block's outputs on the same input, and a
    `"channels_last"` layer gives them on the transposed input. The block
    needs even map sizes; on odd sizes the layer still works, pooling with
    `"same"` padding (the last row/column forms its own window).

    Three weight forms are understood, per convolution:

    - a plain `weight` (BigGAN built with `nn.Conv2d`);
    - BigGAN-PyTorch's spectral norm: `weight`, `u0` and `sv0`. In
      inference (`eval()`) BigGAN divides by the sigma from one power
      iteration started at the stored `u0`, leaving `u0` untouched; `sv0` is
      only a log of the last *training* step's sigma, taken before that
      step's weight update, so it does not reproduce the block's outputs
      and is ignored. The import computes that same inference sigma;
    - `torch.nn.utils.spectral_norm` (`weight_orig`, `weight_u`,
      `weight_v`) or its `parametrizations` form, whose inference sigma is
      `u . (W v)` from the stored vectors, without iteration.

    The layer gets the normalized kernel `W / sigma` as a plain kernel
    (`spectral_norm=False`): it reproduces the block's inference outputs.
    Biases are loaded when all four convolutions have one.

    Args:
        state_dict: dict, mapping of names to NumPy arrays or torch tensors,
            e.g. `module.state_dict()`. Torch is never needed for NumPy values.
        layer: SelfAttention2D or None, optional `SelfAttention2D` to fill. It
            must be compatible (one head, `pool_size=2`, no scale, no
            activation, no spectral norm, matching channels and bias); it is
            built if needed. Defaults to `None`: a new layer is created.
        prefix: str, prefix of the block's names in `state_dict`, e.g.
            `"blocks.3.1."` for the attention block inside a BigGAN generator.
            Defaults to `""`.
        data_format: str or None, data format of a new layer. Defaults to
            `keras.config.image_data_format()`. Only with `layer=None`.
        name: str or None, name of a new layer. Only with `layer=None`.

    Returns:
        The built `SelfAttention2D` holding the imported weights.

    Raises:
        ValueError: if a name is missing or not understood, a shape is
            inconsistent, or `layer` is incompatible.
        TypeError: if `layer` is not a `SelfAttention2D` or a value is not a
            numeric array.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import load_biggan_attention
    >>> rng = np.random.default_rng(0)
    >>> state = {  # e.g. `Attention(ch=64).state_dict()` in BigGAN-PyTorch
    ...     "theta.weight": rng.normal(size=(8, 64, 1, 1)),
    ...     "phi.weight": rng.normal(size=(8, 64, 1, 1)),
    ...     "g.weight": rng.normal(size=(32, 64, 1, 1)),
    ...     "o.weight": rng.normal(size=(64, 32, 1, 1)),
    ...     "gamma": np.array(0.1),
    ... }
    >>> layer = load_biggan_attention(state, data_format="channels_first")
    >>> layer(np.zeros((1, 64, 16, 16), "float32")).shape
    (1, 64, 16, 16)
    ```

    Reference:
        - [Brock et al., 2018](https://arxiv.org/abs/1809.11096) (BigGAN)
        - [Zhang et al., 2018](https://arxiv.org/abs/1805.08318) (SAGAN)
    """
    state = _select_prefix(state_dict, prefix)
    used = set()
    kernels = {
        conv: _normalized_kernel(state, conv, used) for conv in PROJECTIONS
    }
    biases = _biases(state, used)
    gamma = _gamma(state, used)
    _check_all_used(state, used, prefix)
    channels = _check_channels(kernels, biases)
    if layer is None:
        layer = SelfAttention2D(
            key_channels=kernels["theta"].shape[1],
            value_channels=kernels["g"].shape[1],
            pool_size=2,
            use_bias=biases is not None,
            data_format=data_format,
            name=name,
        )
    else:
        _check_layer(layer, biases is not None, data_format, name)
    _build(layer, channels)
    _assign(layer, kernels, biases, gamma)
    return layer


def _select_prefix(state_dict, prefix):
    if not hasattr(state_dict, "items"):
        raise TypeError(
            "`state_dict` must be a mapping of names to arrays. "
            f"Received: state_dict of type {type(state_dict).__name__}"
        )
    if not isinstance(prefix, str):
        raise ValueError(
            f"`prefix` must be a string. Received: prefix={prefix!r}"
        )
    if prefix and not prefix.endswith("."):
        prefix += "."
    state = {
        key[len(prefix) :]: value
        for key, value in state_dict.items()
        if isinstance(key, str) and key.startswith(prefix)
    }
    if not state:
        raise ValueError(
            f"`state_dict` has no names starting with `prefix`={prefix!r}. "
            f"Received names: {sorted(map(str, state_dict))[:8]}"
        )
    return state


def _to_numpy(key, value):
    """Returns `value` as a float64 array, naming `key` on failure."""
    # A torch tensor can only exist once torch is imported, so look it up
    # instead of importing it: NumPy input never needs torch.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        array = np.asarray(value)
    except Exception:
        array = None
    if array is None or not np.issubdtype(array.dtype, np.number):
        raise TypeError(
            f"`state_dict[{key!r}]` must be a numeric array or tensor. "
            f"Received: {type(value).__name__}"
        )
    return array.astype(np.float64)


def _take(state, key, used):
    if key not in state:
        raise ValueError(
            f"`state_dict` lacks `{key}` (names are given without `prefix`). "
            f"Received names: {sorted(state)}"
        )
    used.add(key)
    return _to_numpy(key, state[key])


def _weight_matrix(key, weight):
    """The `(out, in)` matrix of a 1x1 convolution weight."""
    if weight.ndim == 4 and weight.shape[2:] == (1, 1):
        return weight[:, :, 0, 0]
    if weight.ndim == 2:
        return weight
    raise ValueError(
        f"`state_dict[{key!r}]` must be a 1x1 convolution weight of shape "
        f"(out, in, 1, 1). Received: shape={weight.shape}"
    )


def _normalized_kernel(state, conv, used):
    """`W / sigma` of one convolution as our `(in, out)` kernel."""
    for names in TORCH_SPECTRAL_NORM_NAMES:
        if f"{conv}.{names[0]}" in state:
            return _torch_normalized_kernel(state, conv, names, used)
    key = f"{conv}.weight"
    weight = _weight_matrix(key, _take(state, key, used))
    if f"{conv}.u0" not in state:
        return weight.T
    u = _take(state, f"{conv}.u0", used).reshape(-1)
    _check_vector(f"{conv}.u0", u, weight.shape[0])
    # Further singular vectors (`u1`, ...) and the logged `sv*` do not
    # enter BigGAN's inference weight.
    used.update(key for key in state if _is_biggan_buffer(key, conv))
    return (weight / _biggan_sigma(weight, u)).T


def _torch_normalized_kernel(state, conv, names, used):
    """`W / sigma` from torch's spectral norm, whose inference sigma is
    `u . (W v)` with the stored vectors (no power iteration in eval)."""
    weight_key, u_key, v_key = (f"{conv}.{name}" for name in names)
    weight = _weight_matrix(weight_key, _take(state, weight_key, used))
    u = _take(state, u_key, used).reshape(-1)
    v = _take(state, v_key, used).reshape(-1)
    _check_vector(u_key, u, weight.shape[0])
    _check_vector(v_key, v, weight.shape[1])
    return (weight / (u @ weight @ v)).T


def _is_biggan_buffer(key, conv):
    head, _, tail = key.rpartition(".")
    return head == conv and bool(_BIGGAN_BUFFER.match(tail))


def _biggan_sigma(weight, u):
    """BigGAN's inference sigma: one power iteration from the stored `u`."""
    v = _normalize(u @ weight)
    u = _normalize(weight @ v)
    return float(u @ weight @ v)


def _normalize(vector):
    # As `torch.nn.functional.normalize`: divide by max(norm, eps).
    return vector / max(np.linalg.norm(vector), _EPSILON)


def _check_vector(key, vector, size):
    if vector.shape != (size,):
        raise ValueError(
            f"`state_dict[{key!r}]` must hold {size} values to match its "
            f"weight. Received: shape={vector.shape}"
        )


def _biases(state, used):
    """The four biases, or `None` when the convolutions have none."""
    keys = {conv: f"{conv}.bias" for conv in PROJECTIONS}
    present = [conv for conv, key in keys.items() if key in state]
    if not present:
        return None
    if len(present) != len(keys):
        raise ValueError(
            "Either all of `theta`, `phi`, `g`, `o` have a bias or none "
            f"does. Received biases for: {present}"
        )
    return {
        conv: _take(state, key, used).reshape(-1) for conv, key in keys.items()
    }


def _gamma(state, used):
    gamma = _take(state, "gamma", used)
    if gamma.size != 1:
        raise ValueError(
            "`state_dict['gamma']` must be a scalar. "
            f"Received: shape={gamma.shape}"
        )
    return float(gamma.reshape(()))


def _check_all_used(state, used, prefix):
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise ValueError(
            "`state_dict` must hold only the names of a BigGAN attention "
            "block: pass the block's own state dict, or its `prefix`. "
            f"Received: prefix={prefix!r}, other names {unexpected}"
        )


def _check_channels(kernels, biases):
    """Checks the shapes fit together; returns the input channels `C`."""
    channels = kernels["theta"].shape[0]
    expected = {
        "theta": (channels, kernels["theta"].shape[1]),
        "phi": kernels["theta"].shape,
        "g": (channels, kernels["g"].shape[1]),
        "o": (kernels["g"].shape[1], channels),
    }
    for conv, shape in expected.items():
        if kernels[conv].shape != shape:
            raise ValueError(
                f"The `{conv}` weight does not fit the others: expected "
                f"(out, in)={shape[::-1]}. "
                f"Received: (out, in)={kernels[conv].shape[::-1]}"
            )
        if biases is not None and biases[conv].shape != (shape[1],):
            raise ValueError(
                f"`{conv}.bias` must hold {shape[1]} values. "
                f"Received: shape={biases[conv].shape}"
            )
    return channels


def _check_layer(layer, use_bias, data_format, name):
    if not isinstance(layer, SelfAttention2D):
        raise TypeError(
            "`layer` must be a `SelfAttention2D`. "
            f"Received: layer of type {type(layer).__name__}"
        )
    if data_format is not None or name is not None:
        raise ValueError(
            "`data_format` and `name` apply to a new layer only; leave them "
            f"out when passing `layer`. Received: data_format={data_format!r}"
            f", name={name!r}"
        )
    required = {
        "num_heads": 1,
        "pool_size": (2, 2),
        "use_scale": False,
        "spectral_norm": False,
        "use_bias": use_bias,
    }
    for attribute, value in required.items():
        if getattr(layer, attribute) != value:
            raise ValueError(
                f"`layer` must have {attribute}={value!r} to match the BigGAN "
                f"block. Received: {attribute}={getattr(layer, attribute)!r}"
            )
    if layer.activation.__name__ != "linear":
        raise ValueError(
            "`layer` must have no activation to match the BigGAN block. "
            f"Received: activation={layer.activation.__name__!r}"
        )


def _build(layer, channels):
    if layer.built:
        return
    if layer.data_format == "channels_first":
        layer.build((None, channels, None, None))
    else:
        layer.build((None, None, None, channels))


def _assign(layer, kernels, biases, gamma):
    if layer.shortcut_projection is not None:
        raise ValueError(
            "`layer` must keep the input channels (`filters=None`) to match "
            f"the BigGAN block. Received: filters={layer.filters}"
        )
    for conv, projection_name in PROJECTIONS.items():
        projection = getattr(layer, projection_name)
        if tuple(projection.kernel.shape) != kernels[conv].shape:
            raise ValueError(
                f"`layer.{projection_name}` must have the kernel shape "
                f"(in, out)={kernels[conv].shape} of the BigGAN `{conv}` "
                "weight: check the layer's input channels, `key_channels` "
                "and `value_channels`. Received: kernel shape "
                f"{tuple(projection.kernel.shape)}"
            )
    for conv, projection_name in PROJECTIONS.items():
        projection = getattr(layer, projection_name)
        projection.kernel.assign(kernels[conv].astype(projection.kernel.dtype))
        if biases is not None:
            projection.bias.assign(biases[conv].astype(projection.bias.dtype))
    layer.gamma.assign(np.asarray(gamma, dtype=layer.gamma.dtype))
