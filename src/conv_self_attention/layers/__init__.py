from conv_self_attention.layers.base_self_attention import BaseSelfAttention
from conv_self_attention.layers.grid import key_value_grid
from conv_self_attention.layers.kernel_choice import use_attention_kernel
from conv_self_attention.layers.self_attention import SelfAttention1D
from conv_self_attention.layers.self_attention import SelfAttention2D
from conv_self_attention.layers.self_attention import SelfAttention3D
from conv_self_attention.layers.self_attention import SelfAttention_Conv2D

__all__ = [
    "BaseSelfAttention",
    "SelfAttention1D",
    "SelfAttention2D",
    "SelfAttention3D",
    "SelfAttention_Conv2D",
    "key_value_grid",
    "use_attention_kernel",
]
