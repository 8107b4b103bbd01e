"""The `auto` rule: which exact kernel to run, as a pure function.

`select_implementation` sees only plain values (backend, device, dtype,
sizes, widths), never a tensor or a global, so every branch, GPU ones
included, is tested on a CPU machine. `attention(...)` finds the device
once (`kernels.device`) and passes it in.

The rule, in order:

1. Scores asked for: `dense` (only it has the N x M matrix to return).
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

CPU, attention core (batch 4, one head, q/k of 8 and v of 32 channels,
fwd+bwd, best of 5-7 runs, each ratio measured in one process on a shared
2-core CPU, `benchmarks/cpu/kernel_thresholds.py`):

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

TF's dense kernel wins up to 32x32 maps; JAX's handwritten chunked
backward pass beats autodiff through the dense softmax at every size.
On CPU every kernel computes in float32, so the dtype moves nothing there.

GPU, NVIDIA H200, whole layer fwd+bwd, ms (working GiB); one head, q/k
C/8, v C/2; `lowp` is `fused` fed the compute dtype; chunk sizes in [ ]:

| case            | naive    | dense    | fused    | chunked       | lowp     |
|-----------------|----------|----------|----------|---------------|----------|
| jax f32 32² b32 | 1.5      | 1.1      | 1.2      | 2.0 [32]      |          |
| jax f32 64² b16 | 4.2 (3)  | 4.0 (3)  | 4.3      | 9.6 [32]      |          |
| jax f32 128² b8 | 31 (24)  | 31 (24)  | 31 (24)  | 31 (1.6) [1k] |          |
| jax f32 256² b2 | 122 (64) | 123 (96) | OOM      | 124 (1.6) [1k]|          |
| jax bf16 128² 8 | 18 (12)  | 31       | 31       | 51 [32]       | 4.6 (.1) |
| jax bf16 256² 2 | 66 (48)  | 121      | 122      | 199 [32]      | 17 (.1)  |
| torch f32 32² 32| 4.6      | 4.6 (.6) | 5.8 (.2) | 12            |          |
| torch f32 64² 16| 8.7 (4)  | 8.9 (4)  | 9.9 (.2) | 66            |          |
| torch f32 128² 8| 45 (32)  | 45 (32)  | 52 (.2)  | 634           |          |
| torch f32 256² 2| OOM      | OOM      | 200 (.2) | 8495          |          |
| torch bf16 128²8| 20 (16)  | 45       | 53       | 631           | 7.9 (.2) |
| torch bf16 256²2| 73 (64)  |          | 202      |               | 21 (.2)  |

float16 measured as bfloat16 (`lowp` 4.6 ms JAX, 7.7 ms torch at 128²).
The `dense` limit on GPU, `2**28` logits, keeps `dense` at 32² batch 32 and
64² batch 16 (where it wins, at the naive block's memory) and leaves
128² batch 8 (`2**31`) to the memory-bounded kernels. torch's `chunked`
was measured before its blocks were sized per device; `auto` never picks
it on torch.
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
# (torch and JAX): 1 GiB of float32 logits, 3-4 GiB measured working set.
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
        backend: `"tensorflow"`, `"jax"` or `"torch"`.
        platform: `"cpu"`, `"gpu"` (NVIDIA), `"rocm"`, `"tpu"` or another
            device name (`kernels.device`).
        compute_capability: `(major, minor)` of an NVIDIA GPU, else `None`.
        dtype: the compute dtype of q, k, v, as a string.
        key_width: per-head width of q and k.
        value_width: per-head width of v.

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
    return_scores=False,
):
    """Returns the kernel name `auto` stands for (the `kernels.auto` rule).

    Args:
        backend: `"tensorflow"`, `"jax"` or `"torch"`.
        platform: `"cpu"`, `"gpu"` (NVIDIA), `"rocm"`, `"tpu"` or another
            device name (`kernels.device`).
        compute_capability: `(major, minor)` of an NVIDIA GPU, else `None`.
        dtype: the compute dtype of q, k, v, as a string.
        num_queries: N, the number of query positions, `None` when
            unknown.
        num_keys: M, the number of key positions, `None` when unknown.
        batch_heads: batch size x heads, `None` when unknown.
        key_width: per-head width of q and k.
        value_width: per-head width of v.
        return_scores: whether the scores are asked for.

    Returns:
        One of `"dense"`, `"chunked"` or `"fused"`.
    """
    if return_scores:
        return "dense"
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
