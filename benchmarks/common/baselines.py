"""The two baselines the benchmark compares our layer against.

`NaiveSelfAttention2D` is the textbook SAGAN block written the obvious way
(1x1 convolutions, one N x N softmax per image); `multi_head_attention`
is Keras' own layer over both spatial axes with the same widths.
"""

import keras
from keras import ops


class NaiveSelfAttention2D(keras.layers.Layer):
    """SAGAN self-attention as usually written: materialises N x N."""

    def __init__(self, key_channels, value_channels, gamma=0.1, **kwargs):
        super().__init__(**kwargs)
        self.key_channels = key_channels
        self.value_channels = value_channels
        self.initial_gamma = gamma

    def build(self, input_shape):
        channels = input_shape[-1]
        # The block's dtype policy (e.g. mixed_bfloat16) reaches its convs.
        policy = self.dtype_policy
        self.query_conv = _pointwise_conv(self.key_channels, policy)
        self.key_conv = _pointwise_conv(self.key_channels, policy)
        self.value_conv = _pointwise_conv(self.value_channels, policy)
        self.output_conv = _pointwise_conv(channels, policy)
        for layer, width in (
            (self.query_conv, channels),
            (self.key_conv, channels),
            (self.value_conv, channels),
            (self.output_conv, self.value_channels),
        ):
            layer.build(tuple(input_shape[:-1]) + (width,))
        self.gamma = self.add_weight(
            name="gamma",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_gamma),
        )

    def call(self, inputs):
        batch, height, width, _ = ops.shape(inputs)
        def flat(t):
            return ops.reshape(t, (batch, height * width, t.shape[-1]))

        query = flat(self.query_conv(inputs))
        key = flat(self.key_conv(inputs))
        value = flat(self.value_conv(inputs))
        scores = ops.softmax(ops.matmul(query, ops.transpose(key, (0, 2, 1))))
        attended = ops.matmul(scores, value)
        attended = ops.reshape(
            attended, (batch, height, width, self.value_channels)
        )
        return inputs + self.gamma * self.output_conv(attended)


def _pointwise_conv(filters, dtype=None):
    return keras.layers.Conv2D(filters, 1, use_bias=False, dtype=dtype)


class MultiHeadSpatialAttention(keras.layers.Layer):
    """`keras.layers.MultiHeadAttention(attention_axes=(1, 2))` as a
    residual self-attention block with SAGAN's widths."""

    def __init__(self, key_channels, value_channels, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=1,
            key_dim=key_channels,
            value_dim=value_channels,
            attention_axes=(1, 2),
            use_bias=False,
        )

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)

    def call(self, inputs):
        return inputs + self.attention(inputs, inputs)
