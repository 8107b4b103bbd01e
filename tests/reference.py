"""An independent NumPy reference of the SAGAN self-attention layer.

Written from the equations in DESIGN.md, sharing no code with the package:
the layer's weights are read as plain arrays and everything else is NumPy.
"""

import math

import numpy as np


def softmax(logits, axis=-1):
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def relative_error(actual, expected):
    """Largest absolute error, relative to the largest expected value."""
    return np.abs(actual - expected).max() / np.abs(expected).max()


def max_pool_same(x, pool_size):
    """Max-pool `(B, *spatial, C)` with strides = pool, TF "same" padding.

    Each axis of size s gets ceil(s/p) windows; the missing p*ceil(s/p) - s
    cells are padded (with -inf) half before (rounded down), rest after.
    """
    for axis, pool in enumerate(pool_size, start=1):
        size = x.shape[axis]
        windows = math.ceil(size / pool)
        total = windows * pool - size
        pad = [(0, 0)] * x.ndim
        pad[axis] = (total // 2, total - total // 2)
        x = np.pad(x, pad, constant_values=-np.inf)
        shape = x.shape[:axis] + (windows, pool) + x.shape[axis + 1 :]
        x = x.reshape(shape).max(axis=axis + 1)
    return x


def spectrally_normalized(kernel, u):
    """W / sigma with sigma from one power iteration started at `u`."""
    v = u @ kernel.T
    v = v / np.sqrt(np.sum(v**2) + 1e-12)
    u = v @ kernel
    u = u / np.sqrt(np.sum(u**2) + 1e-12)
    sigma = np.sum((v @ kernel) * u)
    return kernel / sigma


def projection_weights(projection):
    kernel = np.asarray(projection.kernel.numpy(), dtype=np.float64)
    if projection.spectral_norm:
        u = np.asarray(projection.u.numpy(), dtype=np.float64)
        kernel = spectrally_normalized(kernel, u)
    bias = None
    if projection.bias is not None:
        bias = np.asarray(projection.bias.numpy(), dtype=np.float64)
    return kernel, bias


def project(projection, x):
    kernel, bias = projection_weights(projection)
    out = x @ kernel
    return out if bias is None else out + bias


ACTIVATIONS = {
    "linear": lambda t: t,
    "relu": lambda t: np.maximum(t, 0),
    "tanh": np.tanh,
}


def reference_self_attention(layer, inputs):
    """Returns `(outputs, scores)` of a built `layer` on `inputs` (float64)."""
    x = np.asarray(inputs, dtype=np.float64)
    if layer.data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    positions = np.arange(math.prod(x.shape[1:-1]))
    outputs, scores = _attention_rows(layer, x, positions)
    outputs = outputs.reshape(*x.shape[:-1], outputs.shape[-1])
    if layer.data_format == "channels_first":
        outputs = np.moveaxis(outputs, -1, 1)
    return outputs, scores


def reference_rows(layer, inputs, queries):
    """The outputs of a built channels_last `layer` at the flat query
    positions `queries` only, `(B, len(queries), channels)` float64: for
    maps whose N x M scores would not fit in memory."""
    x = np.asarray(inputs, dtype=np.float64)
    return _attention_rows(layer, x, np.asarray(queries))[0]


def _attention_rows(layer, x, queries):
    """Outputs `(B, len(queries), F)` and scores `(B, h, len(queries), M)`
    at the flat positions `queries` of channels_last `x`."""
    batch = x.shape[0]
    heads = layer.num_heads
    rows = x.reshape(batch, -1, x.shape[-1])[:, queries]
    query = project(layer.query_projection, rows)
    key = project(layer.key_projection, x)
    value = project(layer.value_projection, x)
    if layer.pool_size is not None:
        key = max_pool_same(key, layer.pool_size)
        value = max_pool_same(value, layer.pool_size)
    query = query.reshape(batch, -1, heads, query.shape[-1] // heads)
    key = key.reshape(batch, -1, heads, key.shape[-1] // heads)
    value = value.reshape(batch, -1, heads, value.shape[-1] // heads)
    scale = 1 / math.sqrt(query.shape[-1]) if layer.use_scale else 1.0
    scores = softmax(np.einsum("bnhd,bmhd->bhnm", query, key) * scale)
    context = np.einsum("bhnm,bmhd->bnhd", scores, value)
    context = context.reshape(batch, context.shape[1], -1)
    attended = project(layer.output_projection, context)
    shortcut = rows
    if layer.shortcut_projection is not None:
        shortcut = project(layer.shortcut_projection, rows)
    gamma = float(np.asarray(layer.gamma.numpy()))
    activation = ACTIVATIONS[layer.activation.__name__]
    return activation(shortcut + gamma * attended), scores
