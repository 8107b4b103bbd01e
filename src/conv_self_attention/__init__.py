"""SAGAN-style self-attention over convolutional feature maps for Keras 3."""

from conv_self_attention.convert import load_biggan_attention
from conv_self_attention.kernels import attention
from conv_self_attention.layers import BaseSelfAttention
from conv_self_attention.layers import SelfAttention1D
from conv_self_attention.layers import SelfAttention2D
from conv_self_attention.layers import SelfAttention3D
from conv_self_attention.layers import SelfAttention_Conv2D
from conv_self_attention.layers import key_value_grid
from conv_self_attention.visualize import GammaLogger
from conv_self_attention.visualize import attention_maps
from conv_self_attention.visualize import attention_scores_model
from conv_self_attention.visualize import plot_attention_maps

__version__ = "0.1.0"
