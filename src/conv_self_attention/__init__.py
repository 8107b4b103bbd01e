"""SAGAN-style self-attention over convolutional feature maps for Keras 3."""

from conv_self_attention.convert import load_biggan_attention
from conv_self_attention.kernels import attention
from conv_self_attention.layers import BaseSelfAttention
from conv_self_attention.layers import SelfAttention1D
from conv_self_attention.layers import SelfAttention2D
from conv_self_attention.layers import SelfAttention3D
from conv_self_attention.layers import SelfAttention_Conv2D
from conv_self_attention.layers import key_value_grid

__version__ = "0.1.0"
