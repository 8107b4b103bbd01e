"""The N-D SAGAN self-attention layer shared by the 1D, 2D and 3D classes."""

import types

import keras
from keras import ops

from conv_self_attention import checks
from conv_self_attention import kernels
from conv_self_attention.layers import shapes
from conv_self_attention.layers.config_value import ConfigFromValues
from conv_self_attention.layers.config_value import ConfigValue
from conv_self_attention.layers.grid import key_value_grid
from conv_self_attention.layers.initialization import QUERY_KEY_INITS
from conv_self_attention.layers.initialization import apply_query_key_init
from conv_self_attention.layers.kernel_choice import requested_kernel
from conv_self_attention.layers.projection import attention_inputs
from conv_self_attention.layers.projection import build_projections


class BaseSelfAttention(ConfigFromValues, keras.layers.Layer):
    """SAGAN self-attention over an N-D feature map, with 1x1 convolutions.

    Every position of the map attends to every position of the (optionally
    max-pooled) key/value map. With `F = filters or C` and `h = num_heads`:

    ```
    query = Wq x                  (B, N, dk)   N = prod(spatial sizes)
    key   = pool(Wk x)            (B, M, dk)   M = prod(key/value grid)
    value = pool(Wv x)            (B, M, dv)
    head j: A_j = softmax(query_j key_j^T * scale)            (B, N, M)
    attended = Wo concat_j(A_j value_j)                       (B, N, F)
    outputs = activation(shortcut(x) + gamma * attended)      (B, *spatial, F)
    ```

    All `W` are bias-free 1x1 convolutions unless `use_bias=True`; the
    shortcut is the identity when `F == C` and a learned 1x1 convolution
    otherwise, so the residual is well defined for any `filters`. Heads
    split the key and value channels and never change the output shape.
    Positions are numbered row-major over the spatial axes. Logits and the
    softmax are computed in float32, also under mixed precision.

    This is the base class to subclass (for example to override
    `_compute_attention`); it is not registered for saving on its own, so
    use `SelfAttention1D`, `SelfAttention2D` or `SelfAttention3D` in
    models. The constructor arguments are read-only attributes of the
    layer (`layer.num_heads`); setting one raises `AttributeError`.

    Args:
        rank: int, number of spatial axes (1, 2 or 3).
        filters: int or None, output channels `F`. Defaults to `None`: the
            input channels, so the output shape equals the input shape.
        num_heads: int, number of attention heads. Defaults to `1`.
        key_channels: int or None, query/key channels over all heads.
            Defaults to `F // 8`, rounded up to a positive multiple of
            `num_heads`. An explicit value must be divisible by
            `num_heads`.
        value_channels: int or None, value channels over all heads.
            Defaults to `F // 2`, rounded up to a positive multiple of
            `num_heads`.
        pool_size: int or tuple or None, an int or a `rank`-tuple: keys
            and values are max-pooled by this factor per axis
            (`padding="same"`, as in BigGAN), giving `ceil(size /
            pool_size)` positions per axis. Defaults to `None` (no
            pooling).
        use_scale: bool, if `True`, multiply the logits by the fixed
            factor `1 / sqrt(key_channels / num_heads)`. This is not a
            learnable scale (unlike `keras.layers.Attention`). Defaults to
            `False`, as in SAGAN.
        gamma: float, initial value of the learnable scalar `gamma` that
            scales the attended result. Defaults to `0.0` (SAGAN): the
            layer starts as its shortcut.
        gamma_trainable: bool, whether `gamma` is trained. Defaults to
            `True`.
        activation: str or callable or None, activation applied to the
            output. Defaults to `None` (linear).
        use_bias: bool, whether every 1x1 convolution (shortcut included)
            has a bias. Defaults to `False`.
        spectral_norm: bool, whether every 1x1 convolution is spectrally
            normalized, as in SAGAN/BigGAN. Defaults to `False`.
        return_attention_scores: bool, if `True`, the layer returns
            `(outputs, scores)`. This forces the dense kernel, which holds
            an `N x M` matrix per image and head. Defaults to `False`.
        data_format: str or None, `"channels_last"` or
            `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        attention_implementation: str, `"auto"`, `"dense"`, `"chunked"`
            or `"fused"`; all are exact. `"auto"` picks by backend, device
            (CPU, GPU and its compute capability), compute dtype and map
            size. On NVIDIA GPUs of compute capability 8.0+ (torch, JAX)
            under float16/bfloat16, `"fused"` runs the backend's flash
            kernel in the compute dtype; elsewhere it computes in float32.
        chunk_size: int or None, query positions per block of the chunked
            kernel. Defaults to `None`: blocks within a device budget for
            any batch (`2**21` logits on a CPU, `2**27` on a GPU;
            `plan_blocks` in `kernels.chunked`). An explicit value is
            honoured past it.
        kernel_initializer: str or keras.initializers.Initializer,
            initializer of the 1x1 convolution kernels. Each projection
            gets its own copy (a seeded initializer's copies get seeds
            derived from its seed, one per projection), so no two kernels
            start equal by accident and a seeded initializer gives the
            same kernels on every build. Defaults to `"glorot_uniform"`.
        query_key_init: str, how the query and key kernels relate at
            initialization. `"independent"`: each drawn on its own.
            `"mimetic"`: the key kernel starts as a copy of the query
            kernel, so the logits start as `x_i^T W W^T x_j`, a similarity
            prior (each position first attends to positions with similar
            features; the query-key half of Trockman & Kolter's mimetic
            initialization). Layers configured or saved without this
            argument get the default. Defaults to `"independent"`, the
            setting that measured better (guide "When does the layer
            help?").
        kernel_regularizer: str or keras.regularizers.Regularizer or None,
            regularizer of the kernels. Defaults to `None`.
        kernel_constraint: str or keras.constraints.Constraint or None,
            constraint of the kernels. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: tensor, `(batch, *spatial, channels)` (or channels first),
            floating-point.
        training: bool, with `spectral_norm`, the power iteration state is
            updated only when training. Defaults to `False`.

    Returns:
        `outputs` of shape `(batch, *spatial, filters)` in the compute dtype,
        or `(outputs, scores)` when `return_attention_scores=True`, where
        `scores` are the float32 softmax probabilities of shape
        `(batch, num_heads, N, M)`; every row sums to 1.

    Attributes:
        last_kernel: KernelCall or None, the read-only `kernels.KernelCall`
            of the latest call: the kernel that ran (`"dense"`,
            `"chunked"` or `"fused"`, never `"auto"`), the chunked
            kernel's block size, and more. Set when `call` runs or is
            traced; `None` before the first, and for a call whose
            `_compute_attention` ran no kernel.
            `use_attention_kernel` chooses another kernel for a while
            (e.g. for an export) without changing the config.
        channel_axis: int, the channel axis of the inputs (`-1` or `1`).
        attention_scale: float, the factor on the logits once built:
            `1.0`, or `1 / sqrt(key_channels / num_heads)` with
            `use_scale`.

    Raises:
        ValueError: at construction, for an invalid argument (the message
            names the argument and the value received); when built, for
            inputs of the wrong rank, an unknown channel size, or a
            `pool_size` larger than the map.
        TypeError: when called on inputs that are not floating-point.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention2D
    >>> layer = SelfAttention2D(num_heads=2, return_attention_scores=True)
    >>> outputs, scores = layer(np.zeros((1, 4, 4, 16), "float32"))
    >>> tuple(outputs.shape), tuple(scores.shape)  # scores: (B, h, N, M)
    ((1, 4, 4, 16), (1, 2, 16, 16))
    ```

    Reference:
        - [Zhang et al., 2018](https://arxiv.org/abs/1805.08318) (SAGAN)
        - [Miyato et al., 2018](https://arxiv.org/abs/1802.05957)
          (spectral normalization)
    """

    rank = ConfigValue(config_key=None)
    filters = ConfigValue()
    num_heads = ConfigValue()
    key_channels = ConfigValue()
    value_channels = ConfigValue()
    pool_size = ConfigValue()
    use_scale = ConfigValue()
    initial_gamma = ConfigValue(config_key="gamma")
    gamma_trainable = ConfigValue()
    activation = ConfigValue(serialize=keras.activations.serialize)
    use_bias = ConfigValue()
    spectral_norm = ConfigValue()
    return_attention_scores = ConfigValue()
    data_format = ConfigValue()
    attention_implementation = ConfigValue()
    chunk_size = ConfigValue()
    kernel_initializer = ConfigValue(serialize=keras.initializers.serialize)
    kernel_regularizer = ConfigValue(serialize=keras.regularizers.serialize)
    kernel_constraint = ConfigValue(serialize=keras.constraints.serialize)
    query_key_init = ConfigValue()

    def __init__(
        self,
        rank,
        filters=None,
        num_heads=1,
        key_channels=None,
        value_channels=None,
        pool_size=None,
        use_scale=False,
        gamma=0.0,
        gamma_trainable=True,
        activation=None,
        use_bias=False,
        spectral_norm=False,
        return_attention_scores=False,
        data_format=None,
        attention_implementation="auto",
        chunk_size=None,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        query_key_init="independent",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._rank = rank
        self._filters = checks.positive_int("filters", filters, allow_none=True)
        self._num_heads = checks.positive_int("num_heads", num_heads)
        self._key_channels = checks.head_multiple(
            "key_channels", key_channels, num_heads
        )
        self._value_channels = checks.head_multiple(
            "value_channels", value_channels, num_heads
        )
        self._pool_size = checks.pool_size(pool_size, rank)
        self._use_scale = checks.boolean("use_scale", use_scale)
        self._initial_gamma = checks.finite_float("gamma", gamma)
        self._gamma_trainable = checks.boolean(
            "gamma_trainable", gamma_trainable
        )
        self._activation = checks.keras_object(
            keras.activations.get, "activation", activation
        )
        self._use_bias = checks.boolean("use_bias", use_bias)
        self._spectral_norm = checks.boolean("spectral_norm", spectral_norm)
        self._return_attention_scores = checks.boolean(
            "return_attention_scores", return_attention_scores
        )
        self._data_format = checks.data_format(data_format)
        kernels.validate_implementation(attention_implementation)
        self._attention_implementation = attention_implementation
        self._chunk_size = checks.positive_int(
            "chunk_size", chunk_size, allow_none=True
        )
        self._kernel_initializer = checks.keras_object(
            keras.initializers.get, "kernel_initializer", kernel_initializer
        )
        self._kernel_regularizer = checks.keras_object(
            keras.regularizers.get, "kernel_regularizer", kernel_regularizer
        )
        self._kernel_constraint = checks.keras_object(
            keras.constraints.get, "kernel_constraint", kernel_constraint
        )
        self._query_key_init = checks.one_of(
            "query_key_init", query_key_init, QUERY_KEY_INITS
        )
        # A holder, not an attribute of the layer: exporters (torch.export)
        # restore a module's attributes after tracing, and what a trace
        # ran is what `last_kernel` must then say.
        self._last_kernel = types.SimpleNamespace(call=None)
        self.input_spec = keras.layers.InputSpec(ndim=rank + 2)

    @property
    def last_kernel(self):
        """The `kernels.KernelCall` of the latest call (see `Attributes`)."""
        return self._last_kernel.call

    @property
    def channel_axis(self):
        """The channel axis of the inputs: `-1` or `1` (`data_format`)."""
        return shapes.channel_axis(self.data_format)

    def spatial_shape(self, input_shape):
        """The spatial sizes of an input shape.

        Args:
            input_shape: tuple, the shape of an input, e.g.
                `(None, 28, 28, 3)` (`(None, 3, 28, 28)` channels first).

        Returns:
            A tuple of the spatial sizes, e.g. `(28, 28)` (`None` where
            unknown).
        """
        return shapes.spatial_shape(input_shape, self.data_format)

    def key_value_spatial_shape(self, spatial_shape):
        """The key/value grid for an input map of `spatial_shape`.

        Args:
            spatial_shape: tuple, the spatial sizes of the input map, e.g.
                `(28, 28)`; `None` for an unknown size.

        Returns:
            A tuple with one size (or `None`) per spatial axis: the map
            itself without `pool_size`, else `ceil(size / pool_size)`.
        """
        return key_value_grid(spatial_shape, self.pool_size)

    def attention_inputs(self, inputs, training=False):
        """What `call` feeds the attention, for diagnostics.

        Args:
            inputs: tensor, a batch the layer accepts (the layer is built).
            training: bool, passed to the projections. Defaults to `False`.

        Returns:
            `(query, key, value, shortcut)`, channels last, in the compute
            dtype: `query` `(B, N, h, dk / h)`, `key` `(B, M, h, dk / h)`,
            `value` `(B, M, h, dv / h)` and `shortcut` `(B, *spatial, F)`.
        """
        return attention_inputs(self, inputs, training)

    def build(self, input_shape):
        shapes.check_input_shape(self, input_shape)
        channels = input_shape[self.channel_axis]
        (self.output_channels, self.resolved_key_channels,
         self.resolved_value_channels, self.attention_scale) = (
            shapes.resolved_widths(self, channels)
        )
        for name, projection in build_projections(self, channels).items():
            setattr(self, name, projection)
        apply_query_key_init(self)
        self.gamma = self.add_weight(
            name="gamma",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_gamma),
            trainable=self.gamma_trainable,
            dtype="float32",
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=self.rank + 2, axes={self.channel_axis: channels}
        )

    def call(self, inputs, training=False):
        shapes.check_input_dtype(self, inputs.dtype)
        query, key, value, shortcut = self.attention_inputs(
            inputs, training=training
        )
        # Reset per call: an override of `_compute_attention` that runs no
        # kernel leaves `None`, never the previous call's kernel.
        self._last_kernel.call = None
        context, scores = self._compute_attention(
            query, key, value, training=training
        )
        attended = self.output_projection(
            shapes.merge_heads(context), training=training
        )
        attended = ops.reshape(attended, ops.shape(shortcut))
        # In float32: gamma's gradient sums over every output element, and
        # a bfloat16 sum (XLA's on CPU) keeps a fraction of it (130 for
        # 1118 measured on a 32x32 map).
        scaled = self.gamma * ops.cast(attended, "float32")
        outputs = self.activation(
            shortcut + ops.cast(scaled, attended.dtype)
        )
        if self.data_format == "channels_first":
            outputs = shapes.to_channels_first(outputs)
        if self.return_attention_scores:
            return outputs, scores
        return outputs

    def _compute_attention(self, query, key, value, training=False):
        """Override point: the attention of the split heads.

        Args:
            query: `(B, N, h, dk / h)` tensor.
            key: `(B, M, h, dk / h)` tensor.
            value: `(B, M, h, dv / h)` tensor.
            training: Python bool, as given to `call`.

        Returns:
            `(context, scores)`: `context` `(B, N, h, dv / h)` in the
            compute dtype; `scores` the `(B, h, N, M)` float32 softmax
            probabilities when `return_attention_scores`, else `None`.
            The base method also sets `last_kernel` to what it ran.
        """
        del training  # The kernels have no training-only behaviour.
        implementation, chunk_size = requested_kernel(self)
        kernel_call = kernels.plan_attention(
            query, key, value, implementation=implementation,
            chunk_size=chunk_size, return_scores=self.return_attention_scores,
        )
        self._last_kernel.call = kernel_call
        return kernels.run_attention(
            kernel_call, query, key, value, scale=self.attention_scale
        )

    def compute_output_shape(self, input_shape):
        return shapes.output_shapes(self, input_shape)

    def compute_output_spec(self, inputs, training=False):
        return shapes.output_spec(self, inputs)
