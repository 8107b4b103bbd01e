"""GPU benchmark of the whole layer: fwd+bwd, one process per backend.

    python benchmarks/gpu.py                          # installed backends
    python benchmarks/gpu.py --backends torch jax --budget 200
    python benchmarks/gpu.py --smoke --output-dir DIR  # CPU check

For issue 9's shapes (32x32 batch 32 C=256, 64x64 batch 16 C=128,
128x128 batch 8 C=64, 256x256 batch 2 C=64), the dtype policies float32,
mixed_bfloat16 and mixed_float16, and the cases `naive` (the textbook
block of `baselines.py`, same policy) and `SelfAttention2D` with
`attention_implementation` `auto`, `dense`, `chunked` and `fused`, each
backend's worker process measures

- the median synchronised time of a fwd+bwd step (gradients of a squared
  loss for the input and every weight) over `--steps` steps after warm-up,
- the step's GPU working memory: on torch the peak allocated during one
  step minus what was allocated before it; on JAX the compiled step's
  temp + output bytes (XLA's memory analysis); on TensorFlow the
  allocator's peak during one step minus before.

A case that runs out of memory is recorded as `oom`. `naive` and `auto`
run first for every shape and policy, then the explicit implementations,
and no case starts once `--budget` seconds have passed in that worker
(default: 400 s shared by the backends, so torch and JAX together finish
within 10 minutes), so a run cut short still checks the targets
(`gpu_report.py`). The matmul
roof (bfloat16 and float32) is measured in the same process, and the
float32 matmul precision in force is recorded: JAX's default on Ampere
and later GPUs is TF32-like, TensorFlow enables TF32 by default, torch
does not for matmuls.

Results go to `--output-dir` (default `benchmarks/results/`) as
`gpu_<device>_<backend>.json` and `.md`, `<device>` being the slugified
device name (`nvidia-h200`), plus `gpu_<device>.md` joining the backends.
`--smoke` runs tiny maps and few steps with the same code paths, on CPU
too (memory is then None on torch and TensorFlow); without it, a worker
that finds no GPU stops. `benchmarks/run_gpu.sh` runs this on a GPU
machine without Keras or a package registry.
"""

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
BACKENDS = ("torch", "jax", "tensorflow")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
IMPLEMENTATIONS = ("naive", "auto", "dense", "chunked", "fused")
# Run first everywhere: the targets compare these two.
TARGET_CASES = ("naive", "auto")
# (map side, batch, channels). The first is the small-map target, the last
# two the large-map targets (see gpu_report.py).
SHAPES = ((32, 32, 256), (64, 16, 128), (128, 8, 64), (256, 2, 64))
SMOKE_SHAPES = ((8, 4, 32), (16, 2, 16))
GIB = 2**30
# Seconds of cases for all backends together: with start-up, the matmul
# roof, the last case and the grace period, a run stays within 10 minutes.
TOTAL_BUDGET = 400.0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=None,
        help="default: every installed backend",
    )
    parser.add_argument("--policies", nargs="+", choices=POLICIES,
                        default=list(POLICIES))
    parser.add_argument("--implementations", nargs="+",
                        choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument(
        "--budget", type=float, default=None,
        help="seconds per backend after which no new case starts "
        f"(default: {TOTAL_BUDGET:.0f} s shared by the backends)",
    )
    parser.add_argument(
        "--grace", type=float, default=60.0,
        help="seconds past the budget before a worker is killed",
    )
    parser.add_argument("--steps", type=int, default=10,
                        help="timed steps per case (fewer if slow)")
    parser.add_argument(
        "--max-case-seconds", type=float, default=15.0,
        help="fewer timed steps (at least 3) for cases slower than this",
    )
    parser.add_argument("--roof-size", type=int, default=8192)
    parser.add_argument("--output-dir", default=RESULTS_DIR)
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny maps and 2 steps: checks the script, on CPU too",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backends = args.backends or installed_backends()
    if args.budget is None:
        args.budget = TOTAL_BUDGET / max(len(args.backends), 1)
    if args.smoke:
        args.steps, args.roof_size = min(args.steps, 2), 128
    return args


# --------------------------------------------------------------------------
# Worker side: one backend, every case, in this process.


def worker_main(spec):
    """Measures every case of `spec`, appending one JSON line per record
    to `spec["records_path"]` as it goes (a killed worker keeps them)."""
    start = time.monotonic()
    backend = spec["backend"]
    if backend == "torch":
        # torch before TensorFlow-linked modules, as in the test suite.
        import torch  # noqa: F401
    sys.path.insert(0, HERE)
    with open(spec["records_path"], "a") as out:
        device = device_info(backend)
        info = {"kind": "info", "device": device,
                "versions": versions(backend), "host": host_info()}
        if not device["gpu"] and not spec["smoke"]:
            _emit(out, {**info, "error": "no GPU found (use --smoke)"})
            return 3
        info["matmul_roof_tflops"] = matmul_roof(backend, spec["roof_size"])
        _emit(out, info)
        for shape, policy, case in plan(
            spec["shapes"], spec["policies"], spec["implementations"]
        ):
            if time.monotonic() - start > spec["budget"]:
                _emit(out, {"kind": "stopped", "reason": "budget",
                            "after_seconds": time.monotonic() - start})
                break
            record = run_case(backend, shape, policy, case, spec)
            if case == "auto":
                record["auto_picks"] = auto_choice(backend, device, shape,
                                                   policy)
            _emit(out, record)
    return 0


def _emit(out, record):
    out.write(json.dumps(record) + "\n")
    out.flush()
    print(_describe(record), flush=True)


def _describe(record):
    if record["kind"] != "case":
        return json.dumps(record)
    label = (f"{record['size']}x{record['size']} b{record['batch']} "
             f"C{record['channels']} {record['policy']:14s} "
             f"{record['case']:8s}")
    if record["status"] != "ok":
        return f"{label} {record['status']}: {record['error'][:100]}"
    memory = record["working_bytes"]
    memory = "—" if memory is None else f"{memory / GIB:.3f} GiB"
    return f"{label} {record['median_ms']:9.2f} ms  {memory}"


def plan(shapes, policies, implementations):
    """`naive` and `auto` over every shape and policy first, then the
    explicit implementations: a run cut by the budget still has what the
    targets compare."""
    first = [c for c in implementations if c in TARGET_CASES]
    rest = [c for c in implementations if c not in TARGET_CASES]
    for group in (first, rest):
        for shape in shapes:
            for policy in policies:
                for case in group:
                    yield tuple(shape), policy, case


def run_case(backend, shape, policy, case, spec):
    """One case's record; an exception becomes `oom` or `error`."""
    size, batch, channels = shape
    record = {"kind": "case", "size": size, "batch": batch,
              "channels": channels, "policy": policy, "case": case}
    started = time.monotonic()
    try:
        record.update(measure(backend, shape, policy, case, spec))
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - every failure is a result
        record["status"] = "oom" if is_oom(error) else "error"
        record["error"] = repr(error)[:400]
        if record["status"] == "error":
            record["trace"] = without_folders(traceback.format_exc()[-1200:])
    release_memory(backend)
    record["case_seconds"] = time.monotonic() - started
    return record


def without_folders(text):
    """`text` with each file path cut to its last three parts: results are
    committed, the machine's folders are not."""
    return re.sub(r'"/[^"]*?((?:[^"/]+/){0,2}[^"/]+)"', r'".../\1"', text)


def auto_choice(backend, device, shape, policy):
    """The kernel `auto` stands for in this case, from the package's pure
    rule; None if that rule's signature has changed (timing survives)."""
    try:
        import keras

        from conv_self_attention.kernels import auto

        size, batch, channels = shape
        capability = device.get("compute_capability")
        if capability:
            capability = tuple(int(p) for p in capability.split("."))
        return auto.select_implementation(
            backend=backend,
            platform="gpu" if device["gpu"] else "cpu",
            compute_capability=capability or None,
            dtype=keras.DTypePolicy(policy).compute_dtype,
            num_queries=size * size,
            num_keys=size * size,
            batch_heads=batch,
            key_width=channels // 8,
            value_width=channels // 2,
        )
    except Exception:  # noqa: BLE001 - an annotation, not a measurement
        return None


def is_oom(error):
    """Out of memory, in the words of torch, XLA and TensorFlow."""
    text = repr(error).lower()
    words = ("out of memory", "resource_exhausted", "resource exhausted",
             "oom when allocating")
    return any(word in text for word in words)


def release_memory(backend):
    # Frees the last case's tensors before the next case measures memory.
    gc.collect()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def measure(backend, shape, policy, case, spec):
    """Times one case and measures its working memory."""
    import _harness
    import keras
    import numpy as np
    import report

    size, batch, channels = shape
    # Global, so that sublayers built without a dtype follow it too.
    keras.config.set_dtype_policy(policy)
    try:
        layer = _harness.build_case(case, channels)
        inputs = np.random.default_rng(0).normal(
            size=(batch, size, size, channels)
        ).astype("float32")
        layer.build(inputs.shape)
        started = time.perf_counter()
        step, working_memory = RUNNERS[backend](layer, [inputs])
        setup = time.perf_counter() - started
        warmup = _seconds(step)
        started = time.perf_counter()
        memory = working_memory()
        estimate = time.perf_counter() - started
        count = timed_steps(spec, estimate)
        times = [_seconds(step) for _ in range(count)]
    finally:
        keras.config.set_dtype_policy("float32")
    median = float(np.median(times))
    flops = report.attention_flops(size, batch, channels, backward=True)
    return {
        "median_ms": median * 1e3,
        "min_ms": min(times) * 1e3,
        "steps": count,
        "setup_seconds": setup,
        "warmup_seconds": warmup,
        "working_bytes": memory,
        "tflops": flops / median / 1e12,
        "peak_rss_bytes": _harness.peak_rss_bytes(),
    }


def timed_steps(spec, estimate):
    """`spec["steps"]`, fewer (not under 3) when a step is slow."""
    if estimate <= 0:
        return spec["steps"]
    affordable = int(spec["max_case_seconds"] / estimate)
    return max(min(spec["steps"], affordable), min(3, spec["steps"]))


def _seconds(step):
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


# Each runner returns (step, working_memory): `step()` runs one fwd+bwd
# step and waits for the device; `working_memory()` runs one step and
# returns its working memory in bytes, or None where it cannot be measured.


def _torch_runner(layer, inputs):
    import _harness
    import torch

    run = _harness.make_step(layer, inputs, "fwd+bwd")
    cuda = torch.cuda.is_available()

    def step():
        run()
        if cuda:  # CUDA launches are asynchronous
            torch.cuda.synchronize()

    def working_memory():
        if not cuda:
            step()
            return None
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated() - before

    return step, working_memory


def _jax_runner(layer, inputs):
    import _harness
    import jax

    # On the device once: a NumPy input would be copied there every step.
    inputs = [jax.device_put(x) for x in inputs]
    jitted, arguments = _harness.jax_step_parts(layer, inputs, True)
    compiled = jitted.lower(*arguments).compile()
    stats = compiled.memory_analysis()
    memory = None
    if stats is not None:
        # Arguments (weights, input) exist before the step; temporaries and
        # the gradients it returns are what the step itself needs.
        memory = stats.temp_size_in_bytes + stats.output_size_in_bytes

    def step():
        jax.block_until_ready(compiled(*arguments))

    def working_memory():
        step()
        return memory

    return step, working_memory


def _tensorflow_runner(layer, inputs):
    import _harness
    import tensorflow as tf

    # Fetches the gradients to the host, which waits for the device.
    step = _harness.make_step(layer, inputs, "fwd+bwd")
    gpu = bool(tf.config.list_physical_devices("GPU"))

    def working_memory():
        if not gpu:
            step()
            return None
        tf.config.experimental.reset_memory_stats("GPU:0")
        before = tf.config.experimental.get_memory_info("GPU:0")["current"]
        step()
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] - before

    return step, working_memory


RUNNERS = {
    "torch": _torch_runner,
    "jax": _jax_runner,
    "tensorflow": _tensorflow_runner,
}


def matmul_roof(backend, size):
    """TFLOP/s of the best of 5 `size`^3 matmuls per dtype (None if the
    backend cannot run that dtype here)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.normal(size=(size, size)).astype("float32")
    rates = {}
    for dtype in ("bfloat16", "float32"):
        try:
            matrix = keras.ops.cast(keras.ops.convert_to_tensor(data), dtype)
            step = _matmul_step(backend, matrix)
            step()
            best = min(_seconds(step) for _ in range(5))
            rates[dtype] = 2.0 * size**3 / best / 1e12
        except Exception as error:  # noqa: BLE001 - recorded, not fatal
            rates[dtype] = None
            rates[dtype + "_error"] = repr(error)[:200]
    return rates


def _matmul_step(backend, matrix):
    """A callable multiplying `matrix` by itself and waiting for it."""
    if backend == "jax":
        import jax

        product = jax.jit(lambda a: a @ a)
        return lambda: jax.block_until_ready(product(matrix))
    if backend == "torch":
        import torch

        def step():
            torch.matmul(matrix, matrix)
            if matrix.is_cuda:
                torch.cuda.synchronize()

        return step
    import tensorflow as tf

    # One element fetched to the host waits for the whole product.
    return lambda: tf.matmul(matrix, matrix)[0, 0].numpy()


def device_info(backend):
    """Name, slug, GPU or not, compute capability and float32 matmul
    precision of the device the backend computes on."""
    finders = {
        "torch": _torch_device,
        "jax": _jax_device,
        "tensorflow": _tensorflow_device,
    }
    device = finders[backend]()
    device["slug"] = slugify(device["name"])
    return device


def _torch_device():
    import torch

    if not torch.cuda.is_available():
        return {"name": "cpu", "gpu": False}
    major, minor = torch.cuda.get_device_capability(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "gpu": True,
        "compute_capability": f"{major}.{minor}",
        "memory_gib": torch.cuda.get_device_properties(0).total_memory / GIB,
        "float32_matmul": (
            "TF32" if torch.backends.cuda.matmul.allow_tf32 else "float32"
        ),
        # Convolutions (the layer's 1x1 projections) go through cuDNN.
        "float32_cudnn": (
            "TF32" if torch.backends.cudnn.allow_tf32 else "float32"
        ),
    }


def _jax_device():
    import jax

    device = jax.devices()[0]
    precision = jax.config.jax_default_matmul_precision
    info = {
        "name": device.device_kind,
        "gpu": device.platform == "gpu",
        "platform": device.platform,
        "float32_matmul": precision or "default",
    }
    capability = getattr(device, "compute_capability", None)
    if capability is not None:
        info["compute_capability"] = str(capability)
    if info["gpu"] and not precision:
        info["float32_matmul_note"] = (
            "JAX's default float32 matmul precision is TF32-like on Ampere "
            "and later GPUs; jax.default_matmul_precision('highest') "
            "restores full float32"
        )
    return info


def _tensorflow_device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    if not gpus:
        return {"name": "cpu", "gpu": False}
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    return {
        "name": details.get("device_name", "GPU"),
        "gpu": True,
        "compute_capability": (
            ".".join(map(str, capability)) if capability else None
        ),
        "float32_matmul": "TF32" if tf32 else "float32",
    }


def slugify(name):
    """`NVIDIA H200` -> `nvidia-h200`: the device part of file names."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown"


def versions(backend):
    """Python, Keras and the backend's version, from the worker."""
    import keras

    module = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}
    found = {"python": platform.python_version(), "keras": keras.__version__}
    found[backend] = __import__(module[backend]).__version__
    return found


def host_info():
    """CPU count and host memory, without psutil (optional elsewhere)."""
    info = {"cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / GIB, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    return info


# --------------------------------------------------------------------------
# Parent side: one worker per backend, then files and report.


def installed_backends():
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def run_backend(backend, args):
    """Runs the worker of `backend`; returns the result dict (records read
    back even when the worker died or was killed)."""
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory() as scratch:
        spec = {
            "backend": backend,
            "shapes": [list(shape) for shape in shapes],
            "policies": args.policies,
            "implementations": args.implementations,
            "budget": args.budget,
            "steps": args.steps,
            "max_case_seconds": args.max_case_seconds,
            "roof_size": args.roof_size,
            "smoke": args.smoke,
            "records_path": os.path.join(scratch, "records.jsonl"),
        }
        worker = spawn(spec, args.budget + args.grace, scratch)
        records = read_records(spec["records_path"])
    spec.pop("records_path")
    info = next((r for r in records if r["kind"] == "info"), None)
    return {
        "backend": backend,
        "started_utc": started.isoformat(timespec="seconds"),
        "arguments": spec,
        "worker": worker,
        "info": info,
        "records": [r for r in records if r["kind"] == "case"],
        "stopped": next((r for r in records if r["kind"] == "stopped"), None),
    }


def spawn(spec, timeout, scratch):
    """Runs one worker; its stdout (one line per case) goes to ours."""
    env = dict(os.environ, KERAS_BACKEND=spec["backend"])
    # Room for the naive block's 64 GiB of scores in JAX's pool; TensorFlow
    # would otherwise reserve the whole GPU up front.
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, os.path.abspath(__file__),
               "--worker", json.dumps(spec)]
    stderr_path = os.path.join(scratch, "stderr.txt")
    started = time.monotonic()
    timed_out = False
    with open(stderr_path, "w") as stderr:
        try:
            code = subprocess.run(command, env=env, stderr=stderr,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code, timed_out = None, True
    with open(stderr_path) as stderr:
        tail = without_folders(stderr.read()).strip().splitlines()[-5:]
    return {"returncode": code, "timed_out": timed_out,
            "seconds": time.monotonic() - started, "stderr_tail": tail}


def read_records(path):
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def write_results(result, output_dir):
    """`gpu_<device>_<backend>.json` and `.md`, and `gpu_<device>.md`
    joining every backend's table for that device. Returns the base path."""
    import gpu_report

    slug = result["info"]["device"]["slug"]
    base = os.path.join(output_dir, f"gpu_{slug}_{result['backend']}")
    result["targets"] = gpu_report.targets(result)
    with open(base + ".json", "w") as file:
        json.dump(result, file, indent=1)
    with open(base + ".md", "w") as file:
        file.write(gpu_report.markdown(result))
    parts = [f"## GPU benchmark: {result['info']['device']['name']}", ""]
    for backend in BACKENDS:
        path = os.path.join(output_dir, f"gpu_{slug}_{backend}.md")
        if os.path.exists(path):
            with open(path) as file:
                parts.append(file.read())
    with open(os.path.join(output_dir, f"gpu_{slug}.md"), "w") as file:
        file.write("\n".join(parts))
    return base


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    import gpu_report

    os.makedirs(args.output_dir, exist_ok=True)
    status = 0
    for backend in args.backends:
        print(f"=== {backend} ===", flush=True)
        result = run_backend(backend, args)
        if result["info"] is None or "error" in result["info"]:
            why = (result["info"] or {}).get("error") or result["worker"]
            print(f"{backend}: no results: {why}", file=sys.stderr)
            status = 1
            continue
        base = write_results(result, args.output_dir)
        print(gpu_report.markdown(result), flush=True)
        name = os.path.basename(base)
        print(f"wrote {name}.json and {name}.md", flush=True)
    return status


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
