"""The `auto` rule: which exact kernel to run, as a pure function.

`select_implementation` sees only plain values (backend, device, dtype,
sizes, widths), never a tensor or a global, so every branch, GPU ones
included, is tested on a CPU machine. `attention(...)` finds the device
once (`kernels.device`) and passes it in.

The rule, in order:

1. Scores asked for: `dense`, decided before this rule by `plan.plan_kernel`
   (only `dense` has the N x M matrix to return).
2. A flash kernel is eligible (`flash_eligible`: torch or JAX on an NVIDIA
   GPU of compute capability 8.0+, float16/bfloat16, head width within the
   kernel's limit): `fused`, fed q, k, v in the compute dtype.
3. CPU: torch `fused` (SDPA's CPU flash kernel, float32); otherwise
   `dense` while N x M is at most the backend's `CPU_DENSE_MAX_SCORES`,
   else `chunked` (also when N or M is unknown at trace time).
4. GPU, torch or JAX: `dense` while the whole batch's float32 logits,
   batch x heads x N x M, are at most `GPU_DENSE_MAX_SCORES` (known
   sizes only); else torch `fused` (SDPA's memory-efficient kernel) and
   JAX `chunked` with GPU-sized blocks (`chunked.plan_blocks`).
5. Everything else (TensorFlow on a GPU, AMD GPUs under ROCm, TPUs,
   other devices): `chunked`. Nobody has measured these; `chunked` is
   exact and memory-bounded.

The thresholds rest on measurements committed under `benchmarks/results/`
(the Benchmarks page shows every case); each number quoted here names its
file and key, and a test checks it against them.

CPU (`cpu_thresholds_0.1.json`: the attention core, batch 4, one head, q/k
of 8 and v of 32 channels, fwd+bwd, chunked/dense time measured in one
process on a shared 2-core x86_64 CPU, 2026-11-27, release 0.1.0):
TensorFlow's `dense` wins up to 32x32 maps (chunked/dense 1.07
[from cpu_thresholds_0.1 tensorflow/32] at 32x32, 0.56
[from cpu_thresholds_0.1 tensorflow/48] at 48x48), hence
`CPU_DENSE_MAX_SCORES` of 1024 x 1024; JAX's handwritten chunked backward
pass beats autodiff through the dense softmax at every size measured (at
most 0.73 [from cpu_thresholds_0.1 jax/8], at 8x8), hence 0. On CPU every
kernel computes in float32, so the dtype moves nothing there.

GPU (`gpu_h200_0.1.json`: one NVIDIA H200, release 0.1.x, 2026-11-28; whole
layer fwd+bwd, one head, q/k C/8, v C/2): `dense` is fastest and
memory-cheap on small maps (JAX float32, 32x32 batch 32: 1.1 ms
[from gpu_h200_0.1 jax/float32/32x32/dense/ms] against 2.0 ms
[from gpu_h200_0.1 jax/float32/32x32/chunked/ms] for `chunked`), but at
128x128 batch 8 it holds 24 GiB
[from gpu_h200_0.1 jax/float32/128x8/dense/gib] (JAX) and 32 GiB
[from gpu_h200_0.1 torch/float32/128x8/dense/gib] (torch) of logits and
gradients; the `dense` limit on GPU, `2**28` logits, keeps it at 32x32 batch
32 and 64x64 batch 16 and leaves 128x128 batch 8 (`2**31`) to the
memory-bounded kernels. Fed the compute dtype, the flash kernels took 4.6 ms
[from gpu_h200_0.1 jax/mixed_bfloat16/128x8/fused_lowp/ms] (JAX) and 7.9 ms
[from gpu_h200_0.1 torch/mixed_bfloat16/128x8/fused_lowp/ms] (torch) at
128x128 batch 8 in bfloat16, against 17.9 ms
[from gpu_h200_0.1 jax/mixed_bfloat16/128x8/naive/ms] and 19.6 ms
[from gpu_h200_0.1 torch/mixed_bfloat16/128x8/naive/ms] for the naive block;
float16 measured as bfloat16 (4.6 ms
[from gpu_h200_0.1 jax/mixed_float16/128x8/fused_lowp/ms] and 7.7 ms
[from gpu_h200_0.1 torch/mixed_float16/128x8/fused_lowp/ms]). In float32
torch's `fused` (SDPA's memory-efficient kernel) took 52.3 ms
[from gpu_h200_0.1 torch/float32/128x8/fused/ms] against the naive block's
44.9 ms [from gpu_h200_0.1 torch/float32/128x8/naive/ms] and was the only
way to run 256x256 batch 2; torch's `chunked`, a Python loop of blocks
(measured before its blocks were sized per device), took 634 ms
[from gpu_h200_0.1 torch/float32/128x8/chunked/ms]: `auto` never picks it
on torch.
"""

from conv_self_attention.kernels.fused import padded_width

# Largest N x M (per image and head) for which `dense` is chosen on a CPU:
# the measured crossover of chunked/dense fwd+bwd time (table above).
CPU_DENSE_MAX_SCORES = {
    "tensorflow": 1024 * 1024,
    "jax": 0,
}
_DEFAULT_CPU_DENSE_MAX_SCORES = 1024 * 1024
# Largest batch x heads x N x M for which `dense` is chosen on a GPU
# (torch and JAX): a GiB of float32 logits; the working set measured at
# 64x64 batch 16 (2**28 logits):
# 3.1 GiB [from gpu_h200_0.1 jax/float32/64x16/dense/gib] (JAX),
# 4.05 GiB [from gpu_h200_0.1 torch/float32/64x16/dense/gib] (torch).
GPU_DENSE_MAX_SCORES = 2**28
# Head widths (after padding) that the flash kernels accept: torch SDPA's
# flash kernel up to 256; cuDNN (JAX) up to 128 before Hopper (9.0) and 256
# from Hopper on (Blackwell, 10.x and 12.x, included). This is the rule of
# JAX 0.8.2 and later, the floor in pyproject.toml: earlier JAX releases
# allowed 256 on fewer stacks (0.4.31-0.4.38: never; 0.5-0.7: Hopper with
# cuDNN 9.5+; 0.8.0-0.8.1: Hopper exactly).
TORCH_FLASH_MAX_WIDTH = 256
CUDNN_MAX_WIDTH = {(8, 0): 128, (9, 0): 256}
CUDNN_RULE_SINCE_JAX = (0, 8, 2)
FLASH_MIN_CAPABILITY = (8, 0)
HALF_DTYPES = ("float16", "bfloat16")


def flash_eligible(
    *, backend, platform, compute_capability, dtype, key_width, value_width
):
    """Whether `fused` may feed q, k, v in `dtype` to a flash kernel.

    True only for torch and JAX on an NVIDIA GPU of compute capability 8.0
    or more, float16/bfloat16 inputs, and a padded head width within the
    kernel's limit. Elsewhere the fused kernel computes in float32:
    TensorFlow's `dot_product_attention` is a plain einsum in the input
    dtype, JAX's float16 attention does not compile on CPU, and the GPU
    kernels need Ampere or later.

    Args:
        backend: str, `"tensorflow"`, `"jax"` or `"torch"`.
        platform: str, `"cpu"`, `"gpu"` (NVIDIA), `"rocm"`, `"tpu"` or another
            device name (`kernels.device`).
        compute_capability: tuple or None, `(major, minor)` of an NVIDIA GPU,
            else `None`.
        dtype: str, the compute dtype of q, k, v, as a string.
        key_width: int, per-head width of q and k.
        value_width: int, per-head width of v.

    Returns:
        `True` when a flash kernel may run in `dtype`, else `False`.
    """
    if dtype not in HALF_DTYPES or platform != "gpu":
        return False
    if compute_capability is None:
        return False
    capability = tuple(compute_capability)
    if capability < FLASH_MIN_CAPABILITY:
        return False
    width = padded_width(key_width, value_width)
    if backend == "torch":
        return width <= TORCH_FLASH_MAX_WIDTH
    if backend == "jax":
        return width <= _cudnn_max_width(capability)
    return False


def _cudnn_max_width(capability):
    limits = [w for c, w in CUDNN_MAX_WIDTH.items() if capability >= c]
    return max(limits)


def select_implementation(
    *,
    backend,
    platform,
    compute_capability,
    dtype,
    num_queries,
    num_keys,
    batch_heads,
    key_width,
    value_width,
):
    """Returns the kernel name `auto` stands for (the `kernels.auto` rule).

    Args:
        backend: str, `"tensorflow"`, `"jax"` or `"torch"`.
        platform: str, `"cpu"`, `"gpu"` (NVIDIA), `"rocm"`, `"tpu"` or another
            device name (`kernels.device`).
        compute_capability: tuple or None, `(major, minor)` of an NVIDIA GPU,
            else `None`.
        dtype: str, the compute dtype of q, k, v, as a string.
        num_queries: int or None, N, the number of query positions, `None` when
            unknown.
        num_keys: int or None, M, the number of key positions, `None` when
            unknown.
        batch_heads: int or None, batch size x heads, `None` when unknown.
        key_width: int, per-head width of q and k.
        value_width: int, per-head width of v.

    Returns:
        One of `"dense"`, `"chunked"` or `"fused"`.
    """
    if flash_eligible(
        backend=backend,
        platform=platform,
        compute_capability=compute_capability,
        dtype=dtype,
        key_width=key_width,
        value_width=value_width,
    ):
        return "fused"
    if platform == "cpu":
        return _cpu_rule(backend, num_queries, num_keys)
    if platform == "gpu" and backend in ("torch", "jax"):
        return _gpu_rule(backend, num_queries, num_keys, batch_heads)
    return "chunked"


def _cpu_rule(backend, num_queries, num_keys):
    if backend == "torch":
        return "fused"
    if num_queries is None or num_keys is None:
        return "chunked"
    limit = CPU_DENSE_MAX_SCORES.get(backend, _DEFAULT_CPU_DENSE_MAX_SCORES)
    return "dense" if num_queries * num_keys <= limit else "chunked"


def _gpu_rule(backend, num_queries, num_keys, batch_heads):
    sizes = (num_queries, num_keys, batch_heads)
    if None not in sizes:
        if num_queries * num_keys * batch_heads <= GPU_DENSE_MAX_SCORES:
            return "dense"
    return "fused" if backend == "torch" else "chunked"
