"""What the GPU benchmark runs: backends, shapes, policies, cases, order.

A case is one map shape `(side, batch, channels)`, one dtype policy and
one implementation: `naive` (the textbook block of `baselines.py`) or
`SelfAttention2D` with `attention_implementation` `auto`, `dense`,
`chunked` or `fused`. q/k are `channels // 8` wide, v `channels // 2`,
one head, no pooling.
"""

import numpy as np

BACKENDS = ("torch", "jax", "tensorflow")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
IMPLEMENTATIONS = ("naive", "auto", "dense", "chunked", "fused")
# Run first everywhere: the targets compare these two.
TARGET_CASES = ("naive", "auto")
# (map side, batch, channels), the shapes the H200 was measured at. The
# first is the small-map target, the last two the large-map targets
# (gpu_report.py).
SHAPES = ((32, 32, 256), (64, 16, 128), (128, 8, 64), (256, 2, 64))
# The large-map targets: what benchmarks/gpu/run_gpu.sh measures first.
HEADLINE_SHAPES = SHAPES[2:]
SMOKE_SHAPES = ((8, 4, 32), (16, 2, 16))
# The attention term's weight. With 1.0 it is as large as the input in
# the output (both O(1) at initialisation), so the output check sees a
# kernel's error instead of the residual; it changes no timing.
GAMMA = 1.0


def plan(shapes, policies, implementations):
    """`naive` and `auto` over every shape and policy first, then the
    explicit implementations: a run cut by the budget still has what the
    targets compare. Yields `(shape, policy, case)`."""
    first = [c for c in implementations if c in TARGET_CASES]
    rest = [c for c in implementations if c not in TARGET_CASES]
    for group in (first, rest):
        for shape in shapes:
            for policy in policies:
                for case in group:
                    yield tuple(shape), policy, case


def build(case, shape):
    """The built layer of `case` in the current global dtype policy and
    its float32 input `(batch, side, side, channels)` (seeded)."""
    import harness

    size, batch, channels = shape
    layer = harness.build_case(case, channels, gamma=GAMMA)
    inputs = np.random.default_rng(0).normal(
        size=(batch, size, size, channels)
    ).astype("float32")
    layer.build(inputs.shape)
    return layer, inputs


def widths(channels):
    """`(key_width, value_width)` of a case with `channels` channels."""
    return channels // 8, channels // 2
