"""Inference time of an exported layer in ONNX Runtime against Keras' own
`predict`, with the runtime's peak RSS.

One model, `SelfAttention2D(gamma=1)` on a `SIDE x SIDE x 64` map with the
`auto` kernel, batch 1: Keras' `predict` is timed in this process (median
of `--repeats` calls after one warm-up), then the model is exported to
ONNX (batch left open) by each route the backend has, and each file runs
in a fresh process that imports neither Keras nor the package (median of
`--repeats` runs after one warm-up, and the process's peak RSS). On JAX the
routes differ: `export_model` traces the chunked kernel unrolled, Keras'
`model.export` its training form (`lax.map`, an ONNX `Loop`).

    python benchmarks/export/export_speed.py --backend jax

Results go to `benchmarks/results/export_speed_<backend>.json` with the
machine, its matmul roof and the date; the Deploying guide quotes them.
Nothing else should run meanwhile: the run refuses to start beside pytest.
"""

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
RESULTS = BENCHMARKS / "results"
sys.path[:0] = [str(BENCHMARKS / "cpu"), str(BENCHMARKS / "common")]

# The child: the tests' ONNX loader and export_memory's peak RSS, with
# neither Keras nor the package importable.
RUNTIME = r"""
import statistics, sys, time
sys.path[:0] = sys.argv[3:5]
for name in ("keras", "conv_self_attention"):
    sys.modules[name] = None
import numpy as np
from export_memory import peak_mib
from export_runner import LOADERS

path, repeats = sys.argv[1], int(sys.argv[2])
data = np.load(path + ".npz")
run = LOADERS["onnx"](path)
out = run(data["x"])[0]
times = []
for _ in range(repeats):
    start = time.perf_counter()
    run(data["x"])
    times.append(time.perf_counter() - start)
error = float(np.abs(out - data["y"]).max() / np.abs(data["y"]).max())
print(statistics.median(times), peak_mib(), error)
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax",
                        choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="export `chunked` with this block instead of "
                             "what `auto` traces")
    parser.add_argument("--output", type=pathlib.Path, default=None,
                        help="default: results/export_speed_<backend>.json")
    parser.add_argument("--allow-concurrent-tests", action="store_true")
    return parser.parse_args(argv)


def keras_predict(model, x, repeats):
    """Median seconds of `model.predict` on `x` after one warm-up."""
    model.predict(x, verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, verbose=0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_in_runtime(path, repeats):
    """`(median seconds, peak RSS MiB, max|diff| / max|y|)` in a fresh
    ONNX Runtime process."""
    found = subprocess.run(
        [sys.executable, "-c", RUNTIME, path, str(repeats), str(HERE),
         str(BENCHMARKS.parent / "tests")],
        capture_output=True, text=True, check=True, timeout=1800,
    )
    seconds, peak, error = found.stdout.split()[-3:]
    return float(seconds), float(peak), float(error)


def export_routes(backend):
    """`{route: export(model, path)}` for this backend's ONNX exporters."""
    from conv_self_attention.export import export_model

    routes = {"export_model": lambda model, path: export_model(
        model, path, format="onnx", verbose=False)}
    if backend == "jax":
        routes["model.export"] = lambda model, path: model.export(
            path, format="onnx", verbose=False)
    return routes


def measure(args, folder):
    import keras
    import numpy as np

    from conv_self_attention import SelfAttention2D
    from conv_self_attention import use_attention_kernel

    shape = (args.side, args.side, args.channels)
    layer = SelfAttention2D(gamma=1.0, name="attention")
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")
    y = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
    records = [{"route": "keras", "kernel": layer.last_kernel.implementation,
                "seconds": keras_predict(model, x, args.repeats)}]
    kernel = contextlib.nullcontext()
    if args.chunk_size:
        kernel = use_attention_kernel("chunked", args.chunk_size)
    for route, export in export_routes(args.backend).items():
        path = os.path.join(folder, f"{route}.onnx")
        start = time.perf_counter()
        with kernel:
            export(model, path)
        exported = time.perf_counter() - start
        traced = layer.last_kernel
        np.savez(path + ".npz", x=x, y=y)
        seconds, peak, error = run_in_runtime(path, args.repeats)
        records.append({
            "route": route, "kernel": traced.implementation,
            "chunk_size": traced.chunk_size, "exporting": traced.exporting,
            "export_seconds": exported, "seconds": seconds,
            "peak_mib": peak, "relative_error": error,
            "vs_keras": seconds / records[0]["seconds"],
        })
    return records


def main(argv=None):
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    import attention
    import provenance

    if attention.running_tests() and not args.allow_concurrent_tests:
        sys.exit("pytest is running: timings would be meaningless "
                 "(--allow-concurrent-tests to run anyway)")
    started = datetime.datetime.now(datetime.UTC).isoformat()
    roof = attention.run_roof({})["flops_per_second"]
    with tempfile.TemporaryDirectory() as folder:
        records = measure(args, folder)
    from importlib import metadata

    result = {
        "kind": "export_speed", "started_utc": started,
        "release": attention.package_release(),
        "commit": provenance.source_commit(),
        "machine": attention.machine_info(args.backend),
        "onnxruntime": metadata.version("onnxruntime"),
        "matmul_roof": {"flops_per_second": roof},
        "arguments": vars(args) | {"output": None},
        "records": records,
    }
    output = args.output or RESULTS / f"export_speed_{args.backend}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    for record in records:
        print(json.dumps(record))
    print(f"written: {output}")


if __name__ == "__main__":
    main()
