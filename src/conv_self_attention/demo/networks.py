"""The demo's networks: digit classifiers and a small SAGAN for 16x16 maps.

Every network comes in two variants that differ only by the self-attention
layers, so that comparisons measure the layer and nothing else.
"""

import keras
from keras import layers
from keras import ops

from conv_self_attention import SelfAttention2D
from conv_self_attention.layers.projection import spectral_normalize

LATENT_DIM = 32
FEATURES_LAYER = "features"
ATTENTION_PLACES = ("none", "first", "intermediate")


def attention_options(query_key_init=None):
    """`SelfAttention2D` keyword arguments: `{}` for the layer's default
    initialization, else `{"query_key_init": query_key_init}`."""
    return {} if query_key_init is None else {
        "query_key_init": query_key_init}


def build_classifier(attention="none", resolution=16, num_classes=10,
                     query_key_init=None):
    """A small CNN; `attention` puts `SelfAttention2D` first or mid-network.

    Args:
        attention: `"none"`, `"first"` (the layer on the raw image with
            `filters=8`, as in the original documentation) or
            `"intermediate"` (after the first conv block).
        resolution: input height and width.
        num_classes: number of classes.
        query_key_init: the layer's `query_key_init`; `None` for its
            default.

    Returns:
        A functional `keras.Model` whose penultimate layer is named
        `"features"` (64 units, used for the Fréchet distance).
    """
    if attention not in ATTENTION_PLACES:
        raise ValueError(
            f"`attention` must be one of {ATTENTION_PLACES}. "
            f"Received: attention={attention!r}"
        )
    inputs = keras.Input((resolution, resolution, 1))
    x = inputs
    if attention == "first":
        x = SelfAttention2D(filters=8, num_heads=2, name="attention",
                            **attention_options(query_key_init))(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    if attention == "intermediate":
        x = SelfAttention2D(num_heads=2, name="attention",
                            **attention_options(query_key_init))(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu", name=FEATURES_LAYER)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"classifier_{attention}")


def build_generator(attention=True, resolution=16, query_key_init=None):
    """SAGAN-style generator: latent vector to a `(res, res, 1)` image.

    Nearest upsampling + spectrally normalized 3x3 convs with batch norm;
    with `attention`, a spectrally normalized `SelfAttention2D` on the
    half-resolution feature map (at full resolution it would cost more than
    the rest of the network on a CPU).
    """
    base = resolution // 4
    z = keras.Input((LATENT_DIM,))
    x = SpectralDense(base * base * 64)(z)
    x = layers.Reshape((base, base, 64))(x)
    x = _norm_relu(x)
    x = layers.UpSampling2D()(x)
    x = _norm_relu(SpectralConv2D(32, 3)(x))
    if attention:
        x = SelfAttention2D(spectral_norm=True, name="attention",
                            **attention_options(query_key_init))(x)
    x = layers.UpSampling2D()(x)
    x = _norm_relu(SpectralConv2D(16, 3)(x))
    outputs = layers.Activation("tanh")(SpectralConv2D(1, 3)(x))
    return keras.Model(z, outputs, name=_name("generator", attention))


def build_discriminator(attention=True, resolution=16,
                        query_key_init=None):
    """SAGAN-style discriminator: image to one unbounded score.

    Spectrally normalized convs with leaky ReLU; with `attention`, a
    spectrally normalized `SelfAttention2D` on the half-resolution map.
    """
    inputs = keras.Input((resolution, resolution, 1))
    x = layers.LeakyReLU(0.1)(SpectralConv2D(32, 3, strides=2)(inputs))
    if attention:
        x = SelfAttention2D(spectral_norm=True, name="attention",
                            **attention_options(query_key_init))(x)
    x = layers.LeakyReLU(0.1)(SpectralConv2D(64, 3, strides=2)(x))
    x = layers.LeakyReLU(0.1)(SpectralConv2D(64, 3)(x))
    # Summed, not averaged, features as in SAGAN's discriminator.
    x = layers.Lambda(lambda t: ops.sum(t, axis=(1, 2)))(x)
    outputs = SpectralDense(1)(x)
    return keras.Model(inputs, outputs, name=_name("discriminator", attention))


def _name(role, attention):
    return f"{role}_{'attention' if attention else 'plain'}"


def _norm_relu(x):
    # A short momentum: the GAN trains only a few hundred steps, and the
    # moving statistics draw the per-epoch sample grids.
    return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))


class _SpectralNorm(keras.layers.Layer):
    """Shared power iteration of `SpectralConv2D` and `SpectralDense`.

    The raw kernel is the trainable weight; `call` uses `kernel / sigma`,
    with `sigma` from one power iteration started at the non-trainable `u`
    (held constant for the gradient, updated only when training), so the
    gradient flows through `sigma` and inference matches training.
    """

    def _add_spectral_state(self, kernel_shape, units):
        self.kernel = self.add_weight(
            name="kernel", shape=kernel_shape, initializer="glorot_uniform"
        )
        self.bias = self.add_weight(
            name="bias", shape=(units,), initializer="zeros"
        )
        self.u = self.add_weight(
            name="u",
            shape=(1, units),
            initializer=keras.initializers.RandomNormal(seed=1),
            trainable=False,
        )

    def normalized_kernel(self, training):
        kernel, u = spectral_normalize(self.kernel, self.u)
        if training:
            self.u.assign(u)
        return kernel


class SpectralConv2D(_SpectralNorm):
    """A `padding="same"` 2D convolution with spectral normalization."""

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides

    def build(self, input_shape):
        size = self.kernel_size
        shape = (size, size, input_shape[-1], self.filters)
        self._add_spectral_state(shape, self.filters)

    def call(self, inputs, training=False):
        outputs = ops.conv(
            inputs,
            self.normalized_kernel(training),
            strides=self.strides,
            padding="same",
        )
        return outputs + self.bias

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        rows, cols = (
            None if size is None else -(-size // self.strides)
            for size in (height, width)
        )
        return (batch, rows, cols, self.filters)


class SpectralDense(_SpectralNorm):
    """A dense layer with spectral normalization."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self._add_spectral_state((input_shape[-1], self.units), self.units)

    def call(self, inputs, training=False):
        return ops.matmul(inputs, self.normalized_kernel(training)) + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)
