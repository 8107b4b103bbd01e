"""Benchmarks our self-attention layer against the naive SAGAN block and
`keras.layers.MultiHeadAttention`, one backend per run.

    python benchmarks/cpu/attention.py --backend tensorflow --sizes 16 32 64 128

For every square map size (batch 4, 64 channels) and every case

- `auto`:  `SelfAttention2D` with `attention_implementation="auto"`,
- `dense`: `SelfAttention2D` with `attention_implementation="dense"`,
- `naive`: the textbook SAGAN block (`baselines.NaiveSelfAttention2D`),
- `mha`:   `keras.layers.MultiHeadAttention(attention_axes=(1, 2))`,

it measures the forward pass (inference) and the forward+backward pass
(gradients of a scalar loss for the input and all weights), each in its
own subprocess, so each peak RSS (`ru_maxrss`, the whole process, framework
included) belongs to one case and mode and an out-of-memory case cannot
take the others down. A case whose predicted memory does not fit in the
available memory (or `--max-memory-gib`) is skipped and reported as such.
`--batch1-sizes` (default 256) adds maps at batch 1.

The machine's matmul roof is measured in the same run (a float32 matmul in
the same backend), and the table reports how far each time is from the
attention FLOPs at that roof. Results go to `benchmarks/results/` as
`attention_<backend>.json` and `.md`, and `summary.md` joins the latest
Markdown tables of every backend. The run refuses to start while a pytest
process is running (timings would be meaningless), unless
`--allow-concurrent-tests`.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(BENCHMARKS, "results")
# This folder and the shared code, for the workers and the report.
PATHS = [HERE, os.path.join(BENCHMARKS, "common")]
BACKENDS = ("tensorflow", "jax", "torch")
CASES = ("auto", "dense", "naive", "mha")
MODES = ("fwd", "fwd+bwd")
GIB = 2**30


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batch1-sizes", type=int, nargs="*", default=[256])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="keep repeating a step until this much time is measured",
    )
    parser.add_argument(
        "--max-memory-gib",
        type=float,
        default=None,
        help="skip cases predicted above this (default: 92%% of available)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--output-dir", default=RESULTS_DIR)
    parser.add_argument("--allow-concurrent-tests", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------
# Worker side: one case and mode, in a fresh process.


def run_case(spec):
    import harness
    import numpy as np

    shape = (spec["batch"], spec["size"], spec["size"], spec["channels"])
    inputs = [np.random.default_rng(0).normal(size=shape).astype("float32")]
    layer = harness.build_case(spec["case"], spec["channels"])
    layer.build(shape)
    rss_before = harness.peak_rss_bytes()
    step = harness.make_step(layer, inputs, spec["mode"])
    warmup, times = harness.time_step(
        step, repeats=spec["repeats"], min_seconds=spec["min_seconds"]
    )
    return {
        "seconds": min(times),
        "median_seconds": float(np.median(times)),
        "runs": len(times),
        "warmup_seconds": warmup,
        "peak_rss_bytes": harness.peak_rss_bytes(),
        "rss_before_step_bytes": rss_before,
    }


def run_roof(spec):
    """Best float32 matmul rate of this backend, in FLOP/s."""
    import harness
    import keras
    import numpy as np

    size = spec.get("matmul_size", 2048)
    rng = np.random.default_rng(0)
    a, b = (
        keras.ops.convert_to_tensor(rng.normal(size=(size, size)), "float32")
        for _ in range(2)
    )
    def step():
        return keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])

    _, times = harness.time_step(step, repeats=5, min_seconds=2.0)
    return {"flops_per_second": 2.0 * size**3 / min(times)}


def worker_main(spec_json):
    spec = json.loads(spec_json)
    os.environ["KERAS_BACKEND"] = spec["backend"]
    sys.path[:0] = PATHS
    start = time.perf_counter()
    result = run_roof(spec) if spec["case"] == "roof" else run_case(spec)
    result["worker_seconds"] = time.perf_counter() - start
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# Parent side: plan, predict, spawn, collect, report.


def score_elements(size, batch):
    """N x N score elements over the batch (one head in every case)."""
    return batch * (size * size) ** 2


def predicted_bytes(spec):
    """Peak RSS a case is expected to need. Calibrated on the measured
    128x128 batch-4 runs (4 GiB of float32 scores): naive fwd+bwd peaked
    at 17.7 GiB (TF) and 17.1 GiB (JAX), about 1 GiB of framework plus 4.2
    copies of the scores; torch's math-path forward needed 13.2 GiB (3.1
    copies). `auto` never holds N x N once N x N is large (see
    `conv_self_attention.kernels.auto`), so its share is capped.
    """
    copies = 4.2 if spec["mode"] == "fwd+bwd" else 3.2
    scores = copies * 4 * score_elements(spec["size"], spec["batch"])
    if spec["case"] == "auto":
        scores = min(scores, 2 * GIB)
    return 1.0 * GIB + scores


def memory_limit(args):
    if args.max_memory_gib is not None:
        return args.max_memory_gib * GIB
    import psutil

    # The prediction is itself a measured peak, so little margin is kept.
    return 0.92 * psutil.virtual_memory().available


def running_tests():
    """Command lines of other running pytest processes."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] != os.getpid() and "pytest" in cmdline:
            found.append(cmdline)
    return found


def spawn(spec, timeout):
    """Runs one worker; returns its result dict or an `error` dict."""
    env = dict(os.environ, KERAS_BACKEND=spec["backend"])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, os.path.abspath(__file__), "--backend",
               spec["backend"], "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    # A negative return code is a signal: -9 is usually the OOM killer.
    tail = (done.stderr or "").strip().splitlines()[-3:]
    return {"error": f"exit code {done.returncode}: {' | '.join(tail)}"}


def plan(args):
    shapes = [(size, args.batch) for size in args.sizes]
    shapes += [(size, 1) for size in args.batch1_sizes]
    for size, batch in shapes:
        for case in args.cases:
            for mode in args.modes:
                yield {
                    "backend": args.backend, "case": case, "mode": mode,
                    "size": size, "batch": batch, "channels": args.channels,
                    "repeats": args.repeats, "min_seconds": args.min_seconds,
                }


def run_all(args):
    roof = spawn({"backend": args.backend, "case": "roof"}, args.timeout)
    print(f"matmul roof: {roof}", flush=True)
    records = []
    for spec in plan(args):
        needed, limit = predicted_bytes(spec), memory_limit(args)
        label = (f"{spec['size']}x{spec['size']} b{spec['batch']} "
                 f"{spec['case']:5s} {spec['mode']:7s}")
        if needed > limit:
            result = {"skipped": f"predicted {needed / GIB:.1f} GiB > "
                                 f"{limit / GIB:.1f} GiB available"}
        else:
            result = spawn(spec, args.timeout)
        records.append({**spec, "predicted_bytes": needed, **result})
        print(label, _describe(result), flush=True)
    return roof, records


def _describe(result):
    if "seconds" in result:
        return (f"{result['seconds']:8.3f} s  peak "
                f"{result['peak_rss_bytes'] / GIB:5.2f} GiB")
    return result.get("skipped") or result.get("error")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    others = running_tests()
    if others and not args.allow_concurrent_tests:
        print("Refusing to benchmark while tests run (timings and memory "
              "would be meaningless):\n  " + "\n  ".join(others) +
              "\nRerun when they finish, or pass --allow-concurrent-tests.",
              file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.UTC)
    roof, records = run_all(args)
    import provenance
    import report

    result = {
        "backend": args.backend,
        "started_utc": started.isoformat(timespec="seconds"),
        "release": package_release(),
        "commit": provenance.source_commit(),
        "machine": machine_info(args.backend),
        # The output folder is where the results are: recording it would only
        # leak this machine's paths into the committed JSON.
        "arguments": {
            k: v
            for k, v in vars(args).items()
            if k not in ("worker", "output_dir")
        },
        "matmul_roof": roof,
        "records": records,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    base = os.path.join(args.output_dir, f"attention_{args.backend}")
    with open(base + ".json", "w") as file:
        json.dump(result, file, indent=1)
    report.write_reports(args.output_dir, BACKENDS)
    print(report.markdown(result))
    return 0


def package_release():
    """The measured package's version, read from its source: the parent
    process imports no framework, so not the package either."""
    path = os.path.join(BENCHMARKS, "..", "src", "conv_self_attention",
                        "__init__.py")
    with open(path) as file:
        return re.search(r'^__version__ = "([^"]+)"', file.read(), re.M)[1]


def machine_info(backend):
    from importlib import metadata

    import provenance
    import psutil

    versions = {}
    # Distribution names, so the parent never imports a framework.
    for name in ("keras", "tensorflow", "tensorflow-cpu", "jax", "torch"):
        if name in ("keras", backend) or name.startswith(backend):
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": provenance.cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
    }


if __name__ == "__main__":
    sys.path[:0] = PATHS
    sys.exit(main())
