"""The N-D SAGAN self-attention layer shared by the 1D, 2D and 3D classes."""

import math

import keras
from keras import ops

from conv_self_attention import kernels
from conv_self_attention.checks import positive_int
from conv_self_attention.layers import arguments
from conv_self_attention.layers.grid import key_value_grid
from conv_self_attention.layers.grid import normalize_pool_size
from conv_self_attention.layers.grid import num_positions
from conv_self_attention.layers.initialization import apply_query_key_init
from conv_self_attention.layers.initialization import check_query_key_init
from conv_self_attention.layers.initialization import projection_initializer
from conv_self_attention.layers.kernel_choice import current_kernel
from conv_self_attention.layers.projection import PointwiseProjection


class BaseSelfAttention(keras.layers.Layer):
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

    This is the base class; use `SelfAttention1D`, `SelfAttention2D` or
    `SelfAttention3D`.

    Args:
        rank: number of spatial axes (1, 2 or 3).
        filters: output channels `F`. Defaults to `None`: the input
            channels, so the output shape equals the input shape.
        num_heads: number of attention heads. Defaults to `1`.
        key_channels: query/key channels over all heads. Defaults to
            `F // 8`, rounded up to a positive multiple of `num_heads`.
            An explicit value must be divisible by `num_heads`.
        value_channels: value channels over all heads. Defaults to
            `F // 2`, rounded up to a positive multiple of `num_heads`.
        pool_size: `None`, an int or a `rank`-tuple. Keys and values are
            max-pooled by this factor per axis (`padding="same"`, as in
            BigGAN), giving `ceil(size / pool_size)` positions per axis.
            Defaults to `None` (no pooling).
        use_scale: if `True`, multiply the logits by the fixed factor
            `1 / sqrt(key_channels / num_heads)`. This is not a learnable
            scale (unlike `keras.layers.Attention`). Defaults to `False`,
            as in SAGAN.
        gamma: initial value of the learnable scalar `gamma` that scales
            the attended result. Defaults to `0.0` (SAGAN): the layer
            starts as its shortcut.
        gamma_trainable: whether `gamma` is trained. Defaults to `True`.
        activation: activation applied to the output. Defaults to `None`
            (linear).
        use_bias: whether every 1x1 convolution (shortcut included) has a
            bias. Defaults to `False`.
        spectral_norm: whether every 1x1 convolution is spectrally
            normalized, as in SAGAN/BigGAN. Defaults to `False`.
        return_attention_scores: if `True`, the layer returns
            `(outputs, scores)`. This forces the dense kernel, which holds
            an `N x M` matrix per image and head. Defaults to `False`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        attention_implementation: `"auto"`, `"dense"`, `"chunked"` or
            `"fused"`; all are exact. `"auto"` picks by backend, device
            (CPU, GPU and its compute capability), compute dtype and map
            size. On NVIDIA GPUs of compute capability 8.0+ (torch, JAX)
            under float16/bfloat16, `"fused"` runs the backend's flash
            kernel in the compute dtype; elsewhere it computes in float32.
        chunk_size: query positions per block of the chunked kernel.
            Defaults to `None`: blocks within a device budget for any batch
            (`2**21` logits on a CPU, `2**27` on a GPU; `plan_blocks` in
            `kernels.chunked`). An explicit value is honoured past it.
        kernel_initializer: initializer of the 1x1 convolution kernels.
            Each projection gets its own copy (a seeded initializer's
            copies get seeds derived from its seed, one per projection), so
            no two kernels start equal by accident and a seeded initializer
            gives the same kernels on every build. Defaults to
            `"glorot_uniform"`.
        query_key_init: how the query and key kernels relate at
            initialization. `"independent"`: each drawn on its own.
            `"mimetic"`: the key kernel starts as a copy of the query
            kernel, so the logits start as `x_i^T W W^T x_j`, a similarity
            prior (each position first attends to positions with similar
            features; the query-key half of Trockman & Kolter's mimetic
            initialization). Layers configured or saved without this
            argument get the default. Defaults to `"independent"`, the
            setting that measured better (guide "When does the layer
            help?").
        kernel_regularizer: regularizer of the kernels. Defaults to `None`.
        kernel_constraint: constraint of the kernels. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: `(batch, *spatial, channels)` (or channels first) tensor.
        training: Python bool; with `spectral_norm`, the power iteration
            state is updated only when training.

    Returns:
        `outputs` of shape `(batch, *spatial, filters)` in the compute dtype,
        or `(outputs, scores)` when `return_attention_scores=True`, where
        `scores` are the float32 softmax probabilities of shape
        `(batch, num_heads, N, M)`; every row sums to 1.

    Attributes:
        last_kernel: read-only `kernels.KernelCall` of the latest call:
            the kernel that ran (`"dense"`, `"chunked"` or `"fused"`,
            never `"auto"`), the chunked kernel's block size, and more.
            Set when `call` runs or is traced; `None` before the first.
            `use_attention_kernel` chooses another kernel for a while
            (e.g. for an export) without changing the config.

    Raises:
        ValueError: at construction, for an invalid argument (the message
            names the argument and the value received); when built, for
            inputs of the wrong rank, an unknown channel size, or a
            `pool_size` larger than the map.
        TypeError: when called on inputs that are not floating-point.

    Example:

    ```python
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
        self.rank = rank
        self.filters = positive_int("filters", filters, allow_none=True)
        self.num_heads = positive_int("num_heads", num_heads)
        self.key_channels = arguments.head_multiple(
            "key_channels", key_channels, self.num_heads
        )
        self.value_channels = arguments.head_multiple(
            "value_channels", value_channels, self.num_heads
        )
        self.pool_size = normalize_pool_size(pool_size, rank)
        self.use_scale = arguments.boolean("use_scale", use_scale)
        self.initial_gamma = arguments.finite_float("gamma", gamma)
        self.gamma_trainable = arguments.boolean(
            "gamma_trainable", gamma_trainable
        )
        self.activation = arguments.keras_object(
            keras.activations.get, "activation", activation
        )
        self.use_bias = arguments.boolean("use_bias", use_bias)
        self.spectral_norm = arguments.boolean(
            "spectral_norm", spectral_norm
        )
        self.return_attention_scores = arguments.boolean(
            "return_attention_scores", return_attention_scores
        )
        self.data_format = arguments.data_format(data_format)
        kernels.validate_implementation(attention_implementation)
        self.attention_implementation = attention_implementation
        self.chunk_size = positive_int(
            "chunk_size", chunk_size, allow_none=True
        )
        self._last_kernel = None
        self.kernel_initializer = arguments.keras_object(
            keras.initializers.get, "kernel_initializer", kernel_initializer
        )
        self.kernel_regularizer = arguments.keras_object(
            keras.regularizers.get, "kernel_regularizer", kernel_regularizer
        )
        self.kernel_constraint = arguments.keras_object(
            keras.constraints.get, "kernel_constraint", kernel_constraint
        )
        self.query_key_init = check_query_key_init(query_key_init)
        self.input_spec = keras.layers.InputSpec(ndim=rank + 2)

    @property
    def last_kernel(self):
        """The `kernels.KernelCall` of the latest call (see `Attributes`)."""
        return self._last_kernel

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _spatial_shape(self, input_shape):
        if self.data_format == "channels_last":
            return tuple(input_shape[1:-1])
        return tuple(input_shape[2:])

    def _check_input_shape(self, input_shape):
        """Raises `ValueError` for an input shape this layer cannot take."""
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"`{type(self).__name__}` expects inputs of rank "
                f"{self.rank + 2}: (batch, {self.rank} spatial axes, "
                f"channels). Received: input_shape={input_shape}"
            )
        if input_shape[self._channel_axis] is None:
            raise ValueError(
                "The channel dimension of the inputs must be known. "
                f"Received: input_shape={input_shape}"
            )
        spatial = self._spatial_shape(input_shape)
        if any(size is not None and size < 1 for size in spatial):
            raise ValueError(
                "Every spatial size of the inputs must be positive. "
                f"Received: input_shape={input_shape}"
            )
        if self.pool_size is not None:
            for size, pool in zip(spatial, self.pool_size, strict=True):
                if size is not None and pool > size:
                    raise ValueError(
                        "`pool_size` must not exceed the spatial size of "
                        f"the inputs. Received: pool_size={self.pool_size} "
                        f"for input_shape={input_shape}"
                    )

    def _check_input_dtype(self, dtype):
        """Raises `TypeError` unless the inputs have a floating dtype."""
        # Backends disagree on integer inputs (TF fails deep in `call`, JAX
        # and torch silently promote), so refuse them up front everywhere.
        dtype = keras.backend.standardize_dtype(dtype)
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"`{type(self).__name__}` expects floating-point inputs. "
                f"Received: inputs.dtype={dtype}"
            )

    def key_value_spatial_shape(self, spatial_shape):
        """The key/value grid for an input map of `spatial_shape`.

        Args:
            spatial_shape: the spatial sizes of the input map, e.g.
                `(28, 28)`; `None` for an unknown size.

        Returns:
            A tuple with one size (or `None`) per spatial axis: the map
            itself without `pool_size`, else `ceil(size / pool_size)`.
        """
        return key_value_grid(spatial_shape, self.pool_size)

    def attention_inputs(self, inputs, training=False):
        """What `call` feeds the attention, for diagnostics.

        Args:
            inputs: a batch the layer accepts (the layer is built).
            training: passed to the projections. Defaults to `False`.

        Returns:
            `(query, key, value, shortcut)`, channels last, in the compute
            dtype: `query` `(B, N, h, dk / h)`, `key` `(B, M, h, dk / h)`,
            `value` `(B, M, h, dv / h)` and `shortcut` `(B, *spatial, F)`.
        """
        x = inputs
        if self.data_format == "channels_first":
            x = ops.moveaxis(x, 1, -1)
        query = self.query_projection(x, training=training)
        key = self._pool(self.key_projection(x, training=training))
        value = self._pool(self.value_projection(x, training=training))
        shortcut = x
        if self.shortcut_projection is not None:
            shortcut = self.shortcut_projection(x, training=training)
        return (
            self._split_heads(query), self._split_heads(key),
            self._split_heads(value), shortcut,
        )

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        channels = input_shape[self._channel_axis]
        self.output_channels = self.filters or channels
        self.resolved_key_channels = (
            self.key_channels
            or arguments.default_channels(
                self.output_channels // 8, self.num_heads
            )
        )
        self.resolved_value_channels = (
            self.value_channels
            or arguments.default_channels(
                self.output_channels // 2, self.num_heads
            )
        )
        self.query_projection = self._projection(
            "query_projection", channels, self.resolved_key_channels
        )
        self.key_projection = self._projection(
            "key_projection", channels, self.resolved_key_channels
        )
        self.value_projection = self._projection(
            "value_projection", channels, self.resolved_value_channels
        )
        self.output_projection = self._projection(
            "output_projection",
            self.resolved_value_channels,
            self.output_channels,
        )
        self.shortcut_projection = None
        if self.output_channels != channels:
            self.shortcut_projection = self._projection(
                "shortcut_projection", channels, self.output_channels
            )
        apply_query_key_init(self)
        self.gamma = self.add_weight(
            name="gamma",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_gamma),
            trainable=self.gamma_trainable,
            dtype="float32",
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=self.rank + 2, axes={self._channel_axis: channels}
        )

    def _projection(self, name, in_channels, out_channels):
        projection = PointwiseProjection(
            out_channels,
            use_bias=self.use_bias,
            spectral_norm=self.spectral_norm,
            kernel_initializer=projection_initializer(
                self.kernel_initializer, name
            ),
            kernel_regularizer=self.kernel_regularizer,
            kernel_constraint=self.kernel_constraint,
            dtype=self.dtype_policy,
            name=name,
        )
        projection.build((None, in_channels))
        return projection

    def call(self, inputs, training=False):
        self._check_input_dtype(inputs.dtype)
        query, key, value, shortcut = self.attention_inputs(
            inputs, training=training
        )
        result = self._compute_attention(query, key, value)
        context, scores = (
            result if self.return_attention_scores else (result, None)
        )
        attended = self.output_projection(
            self._merge_heads(context), training=training
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
            outputs = ops.moveaxis(outputs, -1, 1)
        if self.return_attention_scores:
            return outputs, scores
        return outputs

    def _split_heads(self, tensor):
        """`(B, *spatial, h * d)` to `(B, positions, h, d)`."""
        heads = self.num_heads
        return ops.reshape(
            tensor,
            (*_flat_positions(tensor), heads, tensor.shape[-1] // heads),
        )

    def _merge_heads(self, context):
        """`(B, N, h, d)` to `(B, N, h * d)`."""
        num_queries = context.shape[1]
        if num_queries is None:
            target = (ops.shape(context)[0], -1, self.resolved_value_channels)
        else:
            target = (-1, num_queries, self.resolved_value_channels)
        return ops.reshape(context, target)

    def _compute_attention(self, query, key, value):
        """Override point: `(B, N, h, dk)`, `(B, M, h, dk)`, `(B, M, h, dv)`
        to `(B, N, h, dv)`, or `(context, scores)` when scores are asked."""
        scale = 1.0
        if self.use_scale:
            scale = 1.0 / math.sqrt(query.shape[-1])
        implementation, chunk_size = current_kernel(self)
        self._last_kernel = kernels.plan_attention(
            query, key, value, implementation=implementation,
            chunk_size=chunk_size, return_scores=self.return_attention_scores,
        )
        return kernels.run_attention(
            self._last_kernel, query, key, value, scale=scale,
            return_scores=self.return_attention_scores,
        )

    def _pool(self, tensor):
        if self.pool_size is None:
            return tensor
        return ops.max_pool(
            tensor,
            pool_size=self.pool_size,
            strides=self.pool_size,
            padding="same",
            data_format="channels_last",
        )

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        input_shape = tuple(input_shape)
        output_shape = list(input_shape)
        output_shape[self._channel_axis] = (
            self.filters or input_shape[self._channel_axis]
        )
        output_shape = tuple(output_shape)
        if not self.return_attention_scores:
            return output_shape
        spatial = self._spatial_shape(input_shape)
        scores_shape = (
            input_shape[0],
            self.num_heads,
            num_positions(spatial),
            num_positions(self.key_value_spatial_shape(spatial)),
        )
        return output_shape, scores_shape

    def compute_output_spec(self, inputs, training=False):
        self._check_input_dtype(inputs.dtype)
        shapes = self.compute_output_shape(inputs.shape)
        if not self.return_attention_scores:
            return keras.KerasTensor(shapes, dtype=self.compute_dtype)
        output_shape, scores_shape = shapes
        return (
            keras.KerasTensor(output_shape, dtype=self.compute_dtype),
            keras.KerasTensor(scores_shape, dtype="float32"),
        )

    def get_config(self):
        config = {
            "filters": self.filters,
            "num_heads": self.num_heads,
            "key_channels": self.key_channels,
            "value_channels": self.value_channels,
            "pool_size": self.pool_size,
            "use_scale": self.use_scale,
            "gamma": self.initial_gamma,
            "gamma_trainable": self.gamma_trainable,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "spectral_norm": self.spectral_norm,
            "return_attention_scores": self.return_attention_scores,
            "data_format": self.data_format,
            "attention_implementation": self.attention_implementation,
            "chunk_size": self.chunk_size,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "kernel_constraint": keras.constraints.serialize(
                self.kernel_constraint
            ),
            "query_key_init": self.query_key_init,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config):
        # Keras' default turns every constructor error into a generic
        # `TypeError`; a bad value in a saved config should instead raise our
        # `ValueError`, which names the argument.
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def _flat_positions(tensor):
    """`(batch, positions)` for reshaping `(B, *spatial, C)` to `(B, N, ...)`.

    The number of positions stays static when the spatial sizes are known
    (the kernels choose by it), even when the batch size is not.
    """
    positions = num_positions(tensor.shape[1:-1])
    if positions is None:
        return ops.shape(tensor)[0], -1
    return -1, positions
