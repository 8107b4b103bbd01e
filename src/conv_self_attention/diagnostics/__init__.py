"""Attention diagnostics: is a trained attention layer used, and how?

`attention_statistics` measures each self-attention layer of a model
(gamma, contribution, entropy, mean distance, local mass, query
dependence; see `conv_self_attention.diagnostics.statistics`),
`AttentionMonitor` logs them during training and `GammaLogger` logs gamma
alone; `attention_ablation` says whether a trained model's predictions
depend on each layer (gamma set to 0, one layer at a time). The plots of
these (`plot_attention_statistics`, `plot_attention_distance`, with
matplotlib) live in `conv_self_attention.visualize`, above this package,
and are importable from `conv_self_attention` too.
"""

from conv_self_attention.diagnostics.ablation import attention_ablation
from conv_self_attention.diagnostics.ablation import relative_change
from conv_self_attention.diagnostics.callbacks import AttentionMonitor
from conv_self_attention.diagnostics.callbacks import GammaLogger
from conv_self_attention.diagnostics.callbacks import flat_statistics
from conv_self_attention.diagnostics.callbacks import gamma_values
from conv_self_attention.diagnostics.reaching import attention_layers
from conv_self_attention.diagnostics.sampling import AUTO_SAMPLE_SIZE
from conv_self_attention.diagnostics.sampling import MAX_BYTES
from conv_self_attention.diagnostics.sampling import QueryPlan
from conv_self_attention.diagnostics.sampling import key_coordinates
from conv_self_attention.diagnostics.sampling import local_keys
from conv_self_attention.diagnostics.sampling import pairwise_distances
from conv_self_attention.diagnostics.sampling import plan_query_sample
from conv_self_attention.diagnostics.sampling import query_coordinates
from conv_self_attention.diagnostics.sampling import sample_query_indices
from conv_self_attention.diagnostics.statistics import BASELINES
from conv_self_attention.diagnostics.statistics import STATISTICS
from conv_self_attention.diagnostics.statistics import LayerStatistics
from conv_self_attention.diagnostics.statistics import attention_distances
from conv_self_attention.diagnostics.statistics import attention_statistics

__all__ = [
    "AUTO_SAMPLE_SIZE",
    "BASELINES",
    "MAX_BYTES",
    "STATISTICS",
    "AttentionMonitor",
    "GammaLogger",
    "LayerStatistics",
    "QueryPlan",
    "attention_ablation",
    "attention_distances",
    "attention_layers",
    "attention_statistics",
    "flat_statistics",
    "gamma_values",
    "key_coordinates",
    "local_keys",
    "pairwise_distances",
    "plan_query_sample",
    "query_coordinates",
    "relative_change",
    "sample_query_indices",
]
