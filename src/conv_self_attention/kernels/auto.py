"""The `auto` rule: which exact kernel to run for given inputs.

The rule, in order:

1. Scores asked for: `dense` (only it has the N x M matrix to return).
2. torch: `fused`. With q and k zero-padded to the value width, torch's
   fused kernel never holds N x M and was the fastest or within noise of
   the fastest from 32x32 maps up (2.1 s against 9.7 s for dense at
   128x128 in issue 4's measurement).
3. N or M unknown at trace time (TF `tf.function` with relaxed shapes):
   `chunked`. It is exact for every N, its memory is bounded whatever N
   turns out to be, and at 32x32 it measured within 1.1x of `dense`.
4. N x M at most the backend's `DENSE_MAX_SCORES`: `dense`; otherwise
   `chunked`.

The input dtype does not move the thresholds: every kernel computes the
logits and the softmax in float32 (see DESIGN.md), so a float16 or bfloat16
map costs the kernel what a float32 one does.

Thresholds come from `benchmarks/kernel_thresholds.py` (attention core,
batch 4, one head, q/k of 8 and v of 32 channels, fwd+bwd, best of 5-7
runs, each ratio measured in one process on a shared 2-core CPU):

| map (N = M)  | TF chunked/dense | JAX chunked/dense |
|--------------|------------------|-------------------|
| 8x8          |                  | 0.73              |
| 12x12        |                  | 0.64              |
| 16x16        | 1.36             | 0.70              |
| 24x24        | 1.49             | 0.37              |
| 32x32        | 1.07             | 0.40              |
| 48x48        | 0.56             | 0.53              |
| 64x64        | 0.32-0.52        | 0.15-0.20         |
| 96x96        | 0.23-0.40        |                   |

TF's dense kernel wins up to 32x32 maps, so `dense` is kept up to
N x M = 1024 x 1024 there. JAX's handwritten chunked backward pass beats
autodiff through the dense softmax at every measured size, so JAX never
picks `dense` unless scores are asked for.
"""

import keras

# Largest N x M (per image and head) for which `dense` is chosen: the
# measured crossover of chunked/dense fwd+bwd time (module docstring).
DENSE_MAX_SCORES = {
    "tensorflow": 1024 * 1024,
    "jax": 0,
}
_DEFAULT_DENSE_MAX_SCORES = 1024 * 1024


def select_implementation(query, key, return_scores=False):
    """Returns the kernel name `auto` stands for with these inputs."""
    if return_scores:
        return "dense"
    backend = keras.backend.backend()
    if backend == "torch":
        return "fused"
    num_queries, num_keys = query.shape[1], key.shape[1]
    if num_queries is None or num_keys is None:
        return "chunked"
    limit = DENSE_MAX_SCORES.get(backend, _DEFAULT_DENSE_MAX_SCORES)
    if num_queries * num_keys <= limit:
        return "dense"
    return "chunked"
