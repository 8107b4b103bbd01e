"""Look inside a trained self-attention layer: maps, plots and logs.

`maps` turns scores into spatial maps, `plots` draws them and the
attention statistics. `GammaLogger` and `gamma_values` live in
`conv_self_attention.diagnostics` and are re-exported here.
"""

from conv_self_attention.diagnostics import GammaLogger
from conv_self_attention.diagnostics import attention_layers
from conv_self_attention.diagnostics import gamma_values
from conv_self_attention.visualize.maps import attention_maps
from conv_self_attention.visualize.maps import attention_scores_model
from conv_self_attention.visualize.maps import query_index
from conv_self_attention.visualize.maps import query_position
from conv_self_attention.visualize.maps import upsample_attention_map
from conv_self_attention.visualize.plots import plot_attention_distance
from conv_self_attention.visualize.plots import plot_attention_maps
from conv_self_attention.visualize.plots import plot_attention_statistics

__all__ = [
    "GammaLogger",
    "attention_layers",
    "attention_maps",
    "attention_scores_model",
    "gamma_values",
    "plot_attention_distance",
    "plot_attention_maps",
    "plot_attention_statistics",
    "query_index",
    "query_position",
    "upsample_attention_map",
]
