"""Attention diagnostics: is a trained attention layer doing anything?

`attention_statistics` measures each self-attention layer of a model
(gamma, contribution, entropy, mean distance, local mass; see
`conv_self_attention.diagnostics.statistics`), `AttentionMonitor` logs them
every epoch and `GammaLogger` logs gamma alone.
"""

from conv_self_attention.diagnostics.callbacks import AttentionMonitor
from conv_self_attention.diagnostics.callbacks import GammaLogger
from conv_self_attention.diagnostics.callbacks import flat_statistics
from conv_self_attention.diagnostics.callbacks import gamma_values
from conv_self_attention.diagnostics.reaching import attention_layers
from conv_self_attention.diagnostics.sampling import MAX_LOGITS
from conv_self_attention.diagnostics.sampling import QueryPlan
from conv_self_attention.diagnostics.sampling import key_coordinates
from conv_self_attention.diagnostics.sampling import pairwise_distances
from conv_self_attention.diagnostics.sampling import plan_query_sample
from conv_self_attention.diagnostics.sampling import query_coordinates
from conv_self_attention.diagnostics.sampling import sample_query_indices
from conv_self_attention.diagnostics.statistics import STATISTICS
from conv_self_attention.diagnostics.statistics import attention_distances
from conv_self_attention.diagnostics.statistics import attention_statistics

__all__ = [
    "MAX_LOGITS",
    "STATISTICS",
    "AttentionMonitor",
    "GammaLogger",
    "QueryPlan",
    "attention_distances",
    "attention_layers",
    "attention_statistics",
    "flat_statistics",
    "gamma_values",
    "key_coordinates",
    "pairwise_distances",
    "plan_query_sample",
    "query_coordinates",
    "sample_query_indices",
]
