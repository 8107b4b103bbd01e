"""The GPU benchmark's worker: one backend, every case, in one process.

Per case it measures

- the median synchronised time of a fwd+bwd step (gradients of a squared
  loss for the input and every weight) over up to `steps` steps after
  warm-up,
- the step's GPU working memory: on torch the peak allocated during one
  step minus what was allocated before it; on JAX the compiled step's
  temp + output bytes (XLA's memory analysis); on TensorFlow the
  allocator's peak during one step minus before,

then checks it (`gpu_check.py`): the kernel the layer reports having run
in the timed steps, and its output against a float32 reference. The
device, its matmul roof and the float32 matmul precision in force come
from `gpu_device.py`.
"""

import json
import re
import time
import traceback

import gpu_cases
import gpu_check
import gpu_device
import gpu_report


def worker_main(spec):
    """Measures every case of `spec`, appending one JSON line per record
    to `spec["records_path"]` as it goes (a killed worker keeps them).
    Returns the process exit status."""
    start = time.monotonic()
    backend = spec["backend"]
    with open(spec["records_path"], "a") as out:
        device = gpu_device.device_info(backend)
        info = {"kind": "info", "device": device,
                "versions": gpu_device.versions(backend),
                "host": gpu_device.host_info()}
        if not device["gpu"] and not spec["smoke"]:
            _emit(out, {**info, "error": "no GPU found (use --smoke)"})
            return 3
        info["matmul_roof_tflops"] = gpu_device.matmul_roof(
            backend, spec["roof_size"]
        )
        _emit(out, info)
        for shape, policy, case in gpu_cases.plan(
            spec["shapes"], spec["policies"], spec["implementations"]
        ):
            if time.monotonic() - start > spec["budget"]:
                _emit(out, {"kind": "stopped", "reason": "budget",
                            "after_seconds": time.monotonic() - start})
                break
            _emit(out, run_case(backend, device, shape, policy, case, spec))
    return 0


def _emit(out, record):
    out.write(json.dumps(record) + "\n")
    out.flush()
    print(gpu_report.describe(record), flush=True)


def run_case(backend, device, shape, policy, case, spec):
    """One case's record: timing and memory, then the check. A failure
    to time becomes status `oom` or `error`; a check that runs out of
    memory is `NOT CHECKED`, one that raises otherwise is a FAIL."""
    import keras

    size, batch, channels = shape
    record = {"kind": "case", "size": size, "batch": batch,
              "channels": channels, "policy": policy, "case": case}
    started = time.monotonic()
    # Global, so that sublayers built without a dtype follow it too.
    keras.config.set_dtype_policy(policy)
    try:
        layer, inputs = gpu_cases.build(case, shape)
        record.update(measure(backend, layer, inputs, spec))
        record["status"] = "ok"
        # What the timed steps ran (the naive block has no kernel).
        kernel = None if case == "naive" else layer.last_kernel
        gpu_device.release_memory(backend)
        record.update(gpu_check.check_case(
            layer, inputs, kernel, case, backend, device, shape, policy
        ))
    except Exception as error:  # noqa: BLE001 - every failure is a result
        _record_failure(record, error)
    finally:
        keras.config.set_dtype_policy("float32")
    gpu_device.release_memory(backend)
    record["case_seconds"] = time.monotonic() - started
    return record


def _record_failure(record, error):
    """Out of memory while timing is a result (`oom`); any other error is
    a FAIL with the exception's first line, for the table."""
    oom = is_oom(error)
    text = repr(error)[:400]
    if record.get("status") != "ok":  # timing failed
        record["status"] = "oom" if oom else "error"
        record["error"] = text
        if not oom:
            record["verdict"] = "FAIL"
            record["problems"] = [f"raised {first_line(error)}"]
    else:  # the check failed
        record["verdict"] = "NOT CHECKED" if oom else "FAIL"
        record["problems"] = [f"check raised {first_line(error)}"]
    if not oom:
        record["trace"] = without_folders(traceback.format_exc()[-1200:])


def first_line(error):
    """`TypeError: the first line of its message`, at most 160 characters."""
    lines = str(error).strip().splitlines() or [""]
    return without_folders(f"{type(error).__name__}: {lines[0]}")[:160]


def without_folders(text):
    """`text` with each file path cut to its last three parts: results are
    committed, the machine's folders are not."""
    return re.sub(r'"/[^"]*?((?:[^"/]+/){0,2}[^"/]+)"', r'".../\1"', text)


def is_oom(error):
    """Out of memory, in the words of torch, XLA and TensorFlow."""
    text = repr(error).lower()
    words = ("out of memory", "resource_exhausted", "resource exhausted",
             "oom when allocating")
    return any(word in text for word in words)


def measure(backend, layer, inputs, spec):
    """Times one case's fwd+bwd step and measures its working memory."""
    import harness
    import numpy as np
    import units

    batch, size, _, channels = inputs.shape
    started = time.perf_counter()
    step, working_memory = RUNNERS[backend](layer, [inputs])
    setup = time.perf_counter() - started
    warmup = gpu_device.seconds(step)
    started = time.perf_counter()
    memory = working_memory()
    estimate = time.perf_counter() - started
    count = timed_steps(spec, estimate)
    times = [gpu_device.seconds(step) for _ in range(count)]
    median = float(np.median(times))
    flops = units.attention_flops(size, batch, channels, backward=True)
    return {
        "median_ms": median * 1e3,
        "min_ms": min(times) * 1e3,
        "steps": count,
        "setup_seconds": setup,
        "warmup_seconds": warmup,
        "working_bytes": memory,
        "tflops": flops / median / 1e12,
        "peak_rss_bytes": harness.peak_rss_bytes(),
    }


def timed_steps(spec, estimate):
    """`spec["steps"]`, fewer (not under 3) when a step is slow."""
    if estimate <= 0:
        return spec["steps"]
    affordable = int(spec["max_case_seconds"] / estimate)
    return max(min(spec["steps"], affordable), min(3, spec["steps"]))


# Each runner returns (step, working_memory): `step()` runs one fwd+bwd
# step and waits for the device; `working_memory()` runs one step and
# returns its working memory in bytes, or None where it cannot be measured.


def _torch_runner(layer, inputs):
    import harness
    import torch

    run = harness.make_step(layer, inputs, "fwd+bwd")
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
    import harness
    import jax

    # On the device once: a NumPy input would be copied there every step.
    inputs = [jax.device_put(x) for x in inputs]
    jitted, arguments = harness.jax_step_parts(layer, inputs, True)
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
    import harness
    import tensorflow as tf

    # Fetches the gradients to the host, which waits for the device.
    step = harness.make_step(layer, inputs, "fwd+bwd")
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
