"""The `make demo` job: real models with the self-attention layer.

Run it with `python -m conv_self_attention.demo --help`. It trains digit
classifiers with and without the layer, a small SAGAN with and without it,
and writes metrics, curves, samples and attention maps to `demo_output/`.

This package imports nothing at import time, so the command line can pick
the Keras backend before Keras is loaded; it only checks that the `demo`
extra is installed.
"""

import importlib.util

_MISSING = [
    name
    for name in ("matplotlib", "sklearn", "scipy")
    if importlib.util.find_spec(name) is None
]
if _MISSING:
    raise ModuleNotFoundError(
        f"The demo needs {', '.join(_MISSING)}, from the package's `demo` "
        "extra: install it with your backend's extra, e.g. `pip install "
        '".[jax,demo]"` in the project\'s folder.',
        name=_MISSING[0],
    )
