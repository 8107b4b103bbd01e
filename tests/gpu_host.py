"""Whether this machine has an NVIDIA GPU that the backend should see.

A GPU test skips where the backend finds no CUDA GPU, but not on a machine
where `nvidia-smi` lists one and the backend is a CUDA build: there a
driver, CUDA or cuDNN mismatch (JAX falls back to its CPU with a warning)
would turn every GPU test into a skip and the run into a success.
"""

import importlib.metadata
import importlib.util
import shutil
import subprocess

import pytest


def listed_gpus():
    """The GPUs that `nvidia-smi -L` lists: 0 where it is missing, fails or
    finds none."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return 0
    try:
        listed = subprocess.run(
            [command, "-L"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines())


def built_with_cuda(backend):
    """Whether the installed build of `backend` can use a CUDA GPU at all
    (the tensorflow-cpu wheel, a CPU torch wheel or JAX without its CUDA
    plugin cannot)."""
    if backend == "torch":
        import torch

        return torch.version.cuda is not None
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.test.is_built_with_cuda()
    return jax_has_cuda_plugin()


# Where a CUDA JAX keeps its GPU support: the plugin modules of the pip
# `jax-cuda12/13-plugin` wheels and of conda-forge's CUDA builds, the
# namespace `jax_plugins` (PJRT plugins), or jaxlib itself (older pip
# `jaxlib==...+cuda` wheels, some source builds).
JAX_CUDA_MODULES = (
    "jax_cuda13_plugin", "jax_cuda12_plugin",
    "jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12", "jaxlib.cuda",
)


def jax_has_cuda_plugin():
    """Whether this JAX has CUDA support installed, however it came:
    a CUDA plugin or jaxlib module, or a `jax-cuda*` distribution or
    `+cuda` jaxlib build under any installer."""
    for name in JAX_CUDA_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ModuleNotFoundError:  # its parent package is missing
            continue
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("jax-cuda") or (
                name == "jaxlib" and "cuda" in dist.version):
            return True
    return False


def unseen_gpu_problem(backend):
    """Why it is an error that `backend` finds no CUDA GPU here, or `None`
    where that is expected (no GPU listed, or a CPU-only build)."""
    count = listed_gpus()
    if count and built_with_cuda(backend):
        return (
            f"nvidia-smi lists {count} GPU(s), but {backend}, a CUDA build, "
            "finds none (a driver, CUDA or cuDNN mismatch?)"
        )
    return None


def skip_or_fail_without_gpu(backend):
    """Called where `backend` finds no CUDA GPU: fails where one should be
    found (`unseen_gpu_problem`), else skips saying why."""
    problem = unseen_gpu_problem(backend)
    if problem is not None:
        pytest.fail(problem)
    why = "a CPU-only build" if listed_gpus() else "nvidia-smi lists none"
    pytest.skip(f"no CUDA GPU for {backend} on this machine ({why})")
