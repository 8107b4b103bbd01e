"""SAGAN-style self-attention over convolutional feature maps for Keras 3."""

import os

# Keras imports its backend's framework when it is imported itself. Without
# that framework (the package installed without a backend extra), the error
# would be a bare ModuleNotFoundError from deep inside Keras: say what to do
# instead.
try:
    import keras  # noqa: F401
except ModuleNotFoundError as err:
    # The top-level module that is missing tells which backend Keras wanted.
    _backends = {
        "tensorflow": "tensorflow",
        "jax": "jax",
        "jaxlib": "jax",
        "torch": "torch",
    }
    _missing = (err.name or "").partition(".")[0]
    if _missing not in _backends:
        raise
    _setting = os.environ.get("KERAS_BACKEND")
    _setting = (
        f"KERAS_BACKEND={_setting}"
        if _setting
        else "KERAS_BACKEND is not set, so Keras takes the backend from "
        "keras.json, or 'tensorflow' by default"
    )
    raise ModuleNotFoundError(
        f"conv_self_attention needs a Keras backend: Keras is set to the "
        f"'{_backends[_missing]}' backend ({_setting}), but the module "
        f"'{_missing}' is not installed. Install a backend with one of the "
        f"package's extras, in the project's folder (or name the built "
        f"wheel instead of the dot):\n"
        f'    pip install ".[jax]"\n'
        f'    pip install ".[tensorflow]"   '
        f"(or [tensorflow-cpu], the smaller CPU-only build)\n"
        f'    pip install ".[torch]"\n'
        f"(once the package is published on the package index: "
        f'pip install "conv-self-attention[jax]", and so on), '
        f"and pick the one you installed with the KERAS_BACKEND environment "
        f"variable (for example KERAS_BACKEND=jax). GPU and TPU builds of "
        f"each backend: see the package's README.",
        name=err.name,
    ) from err

from conv_self_attention.convert import load_biggan_attention
from conv_self_attention.diagnostics import AttentionMonitor
from conv_self_attention.diagnostics import GammaLogger
from conv_self_attention.diagnostics import attention_statistics
from conv_self_attention.export import export_model
from conv_self_attention.export import float32_copy
from conv_self_attention.kernels import attention
from conv_self_attention.layers import BaseSelfAttention
from conv_self_attention.layers import SelfAttention1D
from conv_self_attention.layers import SelfAttention2D
from conv_self_attention.layers import SelfAttention3D
from conv_self_attention.layers import SelfAttention_Conv2D
from conv_self_attention.layers import key_value_grid
from conv_self_attention.layers import use_attention_kernel
from conv_self_attention.visualize import attention_maps
from conv_self_attention.visualize import attention_scores_model
from conv_self_attention.visualize import plot_attention_distance
from conv_self_attention.visualize import plot_attention_maps
from conv_self_attention.visualize import plot_attention_statistics

__all__ = [
    "AttentionMonitor",
    "BaseSelfAttention",
    "GammaLogger",
    "SelfAttention1D",
    "SelfAttention2D",
    "SelfAttention3D",
    "SelfAttention_Conv2D",
    "attention",
    "attention_maps",
    "attention_scores_model",
    "attention_statistics",
    "export_model",
    "float32_copy",
    "key_value_grid",
    "load_biggan_attention",
    "plot_attention_distance",
    "plot_attention_maps",
    "plot_attention_statistics",
    "use_attention_kernel",
]

# The only place the version is written: the build reads this literal
# statically (pyproject.toml, `[tool.setuptools.dynamic]`).
__version__ = "0.3.0"
