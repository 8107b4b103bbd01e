"""The 1x1 projections of the self-attention layers (with optional
functional spectral normalization) and what they feed the attention."""

import keras
from keras import ops

from conv_self_attention.layers.initialization import projection_initializer
from conv_self_attention.layers.shapes import split_heads


class PointwiseProjection(keras.layers.Layer):
    """A 1x1 convolution over the last axis, optionally spectrally normalized.

    A 1x1 convolution is a matmul over the channel axis, so this works for
    any number of spatial axes. With `spectral_norm=True` the raw `kernel`
    stays the trainable weight and the layer uses `kernel / sigma(kernel)`,
    with `sigma` from one power iteration started at the non-trainable
    vector `u` (Miyato et al., 2018). `u` is treated as a constant for the
    gradient and is updated only when `training` is true, so inference and
    training use the same normalized kernel for the same state.

    Args:
        units: output channels.
        use_bias: whether to add a bias.
        spectral_norm: whether to divide the kernel by its spectral norm.
        kernel_initializer, kernel_regularizer, kernel_constraint: as in
            `keras.layers.Conv2D`.
    """

    def __init__(
        self,
        units,
        use_bias=False,
        spectral_norm=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.use_bias = use_bias
        self.spectral_norm = spectral_norm
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer="zeros"
            )
        self.u = None
        if self.spectral_norm:
            self.u = self.add_weight(
                name="u",
                shape=(1, self.units),
                initializer=keras.initializers.RandomNormal(seed=0),
                trainable=False,
                dtype="float32",
            )

    def normalized_kernel(self, training=False):
        """The kernel in use: `kernel / sigma` with spectral norm, else raw."""
        if not self.spectral_norm:
            return self.kernel
        kernel, u = spectral_normalize(
            ops.cast(self.kernel, "float32"), ops.cast(self.u, "float32")
        )
        if training:
            self.u.assign(u)
        return ops.cast(kernel, self.compute_dtype)

    def call(self, inputs, training=False):
        outputs = ops.matmul(inputs, self.normalized_kernel(training))
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


def build_projections(layer, channels):
    """The built 1x1 projections of a self-attention layer.

    Args:
        layer: the layer, with its resolved key, value and output channels
            set; its `use_bias`, `spectral_norm`, kernel regularizer,
            constraint and dtype policy apply to every projection, and
            each gets its own copy of its kernel initializer
            (`initialization.projection_initializer`).
        channels: the input channels `C`.

    Returns:
        `{name: PointwiseProjection or None}` for the query, key, value,
        output and shortcut projections; the shortcut is `None` (the
        identity) when `F == C`.
    """
    keys, values = layer.resolved_key_channels, layer.resolved_value_channels
    outputs = layer.output_channels
    widths = {
        "query_projection": (channels, keys),
        "key_projection": (channels, keys),
        "value_projection": (channels, values),
        "output_projection": (values, outputs),
        # The residual needs F channels: identity when F == C.
        "shortcut_projection": (
            (channels, outputs) if outputs != channels else None
        ),
    }
    projections = {}
    for name, channels in widths.items():
        if channels is None:
            projections[name] = None
            continue
        in_channels, out_channels = channels
        projection = PointwiseProjection(
            out_channels,
            use_bias=layer.use_bias,
            spectral_norm=layer.spectral_norm,
            kernel_initializer=projection_initializer(
                layer.kernel_initializer, name
            ),
            kernel_regularizer=layer.kernel_regularizer,
            kernel_constraint=layer.kernel_constraint,
            dtype=layer.dtype_policy,
            name=name,
        )
        projection.build((None, in_channels))
        projections[name] = projection
    return projections


def attention_inputs(layer, inputs, training):
    """`(query, key, value, shortcut)` of a built self-attention layer, as
    `BaseSelfAttention.attention_inputs` documents them."""
    x = inputs
    if layer.data_format == "channels_first":
        x = ops.moveaxis(x, 1, -1)
    query = layer.query_projection(x, training=training)
    key = _pool(layer, layer.key_projection(x, training=training))
    value = _pool(layer, layer.value_projection(x, training=training))
    shortcut = x
    if layer.shortcut_projection is not None:
        shortcut = layer.shortcut_projection(x, training=training)
    heads = layer.num_heads
    return (
        split_heads(query, heads), split_heads(key, heads),
        split_heads(value, heads), shortcut,
    )


def _pool(layer, tensor):
    """Keys and values max-pooled by `pool_size` (`padding="same"`)."""
    if layer.pool_size is None:
        return tensor
    return max_pool_same(tensor, layer.pool_size)


def max_pool_same(tensor, pool_size):
    """`ops.max_pool(tensor, pool_size, strides=pool_size, padding="same")`
    of a channels-last `tensor`, as a pad, a reshape and a max.

    Not `ops.max_pool` itself: exporters mistranslate it (jax2onnx's 2D and
    3D `MaxPool` fails in ONNX Runtime, LiteRT has no builtin 3D max pool),
    while every exporter handles these three ops. With strides equal to the
    window, "same" pads each axis of size `s` to `ceil(s / p) * p`, the
    smaller half before (as TensorFlow does), with `-inf`: every window
    keeps at least one real element, so the padding never wins. Sizes
    unknown when traced are read from the tensor.
    """
    shape = ops.shape(tensor)
    padding, pooled = [(0, 0)], []
    for axis, pool in enumerate(pool_size, start=1):
        pooled.append((shape[axis] + pool - 1) // pool)
        total = pooled[-1] * pool - shape[axis]
        padding.append((total // 2, total - total // 2))
    tensor = ops.pad(tensor, [*padding, (0, 0)], constant_values=float("-inf"))
    # One axis at a time, so no tensor has more than one axis above the
    # input's rank: LiteRT failed to run a 3D pool done as one reshape to
    # rank 8 and one max.
    for axis, pool in enumerate(pool_size, start=1):
        shape = ops.shape(tensor)
        windows = (*shape[:axis], pooled[axis - 1], pool, *shape[axis + 1 :])
        tensor = ops.max(ops.reshape(tensor, windows), axis=axis + 1)
    return tensor


def spectral_normalize(kernel, u):
    """Returns `(kernel / sigma, next_u)` from one power iteration at `u`.

    `kernel` has its output channels last (any leading shape) and `u` is
    `(1, out_channels)`. The power iteration is a constant for the gradient,
    which flows through `sigma` as a function of the kernel only
    (Miyato et al., 2018). Callers store `next_u` only when training.

    Where the iteration finds `sigma = 0` (an all-zero kernel, as a
    zero-initialised residual branch starts) the kernel is used as it is
    (all zero, not 0 / 0 = NaN) and `next_u` is `u`: the stored vector
    never becomes zero, so normalization resumes once the kernel is not.
    Keras' `SpectralNormalization` skips an all-zero kernel the same way.
    """
    matrix = ops.reshape(kernel, (-1, kernel.shape[-1]))
    u = ops.stop_gradient(u)
    v = ops.stop_gradient(_l2_normalize(ops.matmul(u, ops.transpose(matrix))))
    next_u = ops.stop_gradient(_l2_normalize(ops.matmul(v, matrix)))
    sigma = ops.sum(ops.matmul(v, matrix) * next_u)
    found = sigma > 0
    safe_sigma = ops.where(found, sigma, ops.ones_like(sigma))
    return kernel / safe_sigma, ops.where(found, next_u, u)


def _l2_normalize(vector):
    return vector / ops.sqrt(ops.sum(ops.square(vector)) + 1e-12)
