"""The `make demo` job: real models with the self-attention layer.

Run it with `python -m conv_self_attention.demo --help`. It trains digit
classifiers with and without the layer, a small SAGAN with and without it,
and writes metrics, curves, samples and attention maps to `demo_output/`.

This package imports nothing at import time, so the command line can pick
the Keras backend before Keras is loaded.
"""
