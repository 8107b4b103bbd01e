"""The public 1D, 2D and 3D self-attention layers and the seed's class."""

import warnings

import keras

from conv_self_attention.layers.base_self_attention import BaseSelfAttention

_REGISTER = keras.saving.register_keras_serializable(
    package="conv_self_attention"
)


@_REGISTER
class SelfAttention1D(BaseSelfAttention):
    """SAGAN self-attention over 1D feature maps `(batch, steps, channels)`.

    `BaseSelfAttention` describes the computation; this class takes all of
    its arguments but `rank`.

    Args:
        filters: int or None, output channels. Defaults to `None`: the
            input channels.
        **kwargs: every other argument of `BaseSelfAttention` (all but
            `rank`), and the base layer arguments.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention1D
    >>> layer = SelfAttention1D(num_heads=2)
    >>> layer(np.zeros((2, 10, 16))).shape
    (2, 10, 16)
    ```
    """

    def __init__(self, filters=None, **kwargs):
        super().__init__(rank=1, filters=filters, **kwargs)


@_REGISTER
class SelfAttention2D(BaseSelfAttention):
    """SAGAN self-attention over 2D feature maps, with 1x1 convolutions.

    Inputs are `(batch, height, width, channels)` (or channels first).
    `BaseSelfAttention` describes the computation; this class takes all of
    its arguments but `rank`.

    Args:
        filters: int or None, output channels. Defaults to `None`: the
            input channels.
        **kwargs: every other argument of `BaseSelfAttention` (all but
            `rank`), and the base layer arguments.

    Example:

    ```python
    >>> import keras
    >>> from conv_self_attention import SelfAttention2D
    >>> inputs = keras.Input((28, 28, 1))
    >>> x = SelfAttention2D(filters=8)(inputs)  # as the first layer
    >>> x.shape
    (None, 28, 28, 8)
    >>> SelfAttention2D(num_heads=2, pool_size=2)(x).shape
    (None, 28, 28, 8)
    ```
    """

    def __init__(self, filters=None, **kwargs):
        super().__init__(rank=2, filters=filters, **kwargs)


@_REGISTER
class SelfAttention3D(BaseSelfAttention):
    """SAGAN self-attention over 3D feature maps, with 1x1x1 convolutions.

    Inputs are `(batch, depth, height, width, channels)` (or channels
    first). `BaseSelfAttention` describes the computation; this class
    takes all of its arguments but `rank`.

    Args:
        filters: int or None, output channels. Defaults to `None`: the
            input channels.
        **kwargs: every other argument of `BaseSelfAttention` (all but
            `rank`), and the base layer arguments.

    Example:

    ```python
    >>> import numpy as np
    >>> from conv_self_attention import SelfAttention3D
    >>> layer = SelfAttention3D(filters=16, pool_size=2)
    >>> layer(np.zeros((1, 4, 6, 6, 8))).shape
    (1, 4, 6, 6, 16)
    ```
    """

    def __init__(self, filters=None, **kwargs):
        super().__init__(rank=3, filters=filters, **kwargs)


@_REGISTER
class SelfAttention_Conv2D(SelfAttention2D):  # noqa: N801 (the seed's name)
    """The original layer's name, kept for existing code.

    Same as `SelfAttention2D` with the original defaults: `gamma=0.01`. The
    original spelling `num_head=` is accepted as a deprecated synonym of
    `num_heads=`.

    Args:
        filters: int or None, output channels. Defaults to `None`: the
            input channels.
        gamma: float, initial value of the learnable scalar `gamma`.
            Defaults to `0.01`, the original layer's default.
        **kwargs: every other argument of `SelfAttention2D`, and the
            deprecated `num_head` (a synonym of `num_heads`, with a
            `DeprecationWarning`).

    Raises:
        ValueError: if both `num_head` and `num_heads` are given.

    Example:

    ```python
    >>> from conv_self_attention import SelfAttention_Conv2D
    >>> layer = SelfAttention_Conv2D(filters=8)  # as in the original code
    >>> layer.initial_gamma
    0.01
    ```
    """

    def __init__(self, filters=None, gamma=0.01, **kwargs):
        if "num_head" in kwargs:
            num_head = kwargs.pop("num_head")
            if "num_heads" in kwargs:
                raise ValueError(
                    "Pass only one of `num_heads` and its deprecated "
                    f"synonym `num_head`. Received: num_head={num_head!r}, "
                    f"num_heads={kwargs['num_heads']!r}"
                )
            warnings.warn(
                "`num_head` is deprecated; use `num_heads`.",
                DeprecationWarning,
                stacklevel=2,
            )
            kwargs["num_heads"] = num_head
        super().__init__(filters=filters, gamma=gamma, **kwargs)
