"""The `auto` rule: which exact kernel to run for given inputs.

Thresholds were measured with `benchmarks/kernel_thresholds.py` (attention
core, fwd+bwd, ratios in one process) on a 2-core x86 CPU; see that file's
docstring for the numbers. The rule, in order:

1. Scores asked for: `dense` (only it has the N x M matrix to return).
2. torch: `fused`. With q and k padded to the value width, torch's fused
   CPU/GPU kernel wins at every measured size and never holds N x M.
3. N or M unknown at trace time (TF `tf.function` with relaxed shapes):
   `chunked`. It is exact for every N, its memory is bounded whatever N
   turns out to be, and on small maps it costs little more than `dense`.
4. N x M at most the backend's `DENSE_MAX_SCORES`: `dense`; below that
   size the single N x M matrix is small and the blocking loop only adds
   overhead.
5. Otherwise `chunked`.

The input dtype does not move the thresholds: every kernel computes the
logits and the softmax in float32 (see DESIGN.md), so a float16 or bfloat16
map costs the kernel what a float32 one does.
"""

import keras

# Largest N x M (per image and head) for which `dense` is chosen. Measured
# crossover of chunked/dense fwd+bwd time: see the module docstring.
DENSE_MAX_SCORES = {
    "tensorflow": 4096 * 4096,
    "jax": 1024 * 1024,
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
