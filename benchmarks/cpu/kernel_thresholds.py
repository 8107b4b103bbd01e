"""Measures the `auto` thresholds: attention core, one backend per process.

Times `dense`, `chunked` (several chunk sizes) and `fused` on the attention
core alone (q, k of 8 channels, v of 32, one head, square maps) in one
process and prints each time as a ratio to the first case at the same size
(`dense` by default), so machine noise largely cancels. The cases take
turns: each round times every case once, so a burst of load from other
processes hits them alike. `conv_self_attention.kernels.auto` cites the
results.

    python benchmarks/cpu/kernel_thresholds.py --backend jax --sides 16 32 48 64
    python benchmarks/cpu/kernel_thresholds.py --backend torch --sides 128 \
        --implementations fused chunked --repeats 7
"""

import argparse
import os
import statistics
import sys
import time


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--sides", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=[])
    parser.add_argument("--mode", default="fwd+bwd", choices=["fwd", "fwd+bwd"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--implementations", nargs="*", default=["dense", "chunked", "fused"]
    )
    parser.add_argument(
        "--output", help="a results JSON to write this backend's "
        "chunked/dense ratios into (other backends' records are kept), "
        "e.g. benchmarks/results/cpu_thresholds.json",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.join(os.path.dirname(here), "common")]
    import harness

    cases = [(name, None) for name in args.implementations]
    cases += [("chunked", size) for size in args.chunk_sizes]
    print(f"backend={args.backend} mode={args.mode} batch={args.batch}")
    ratios = {}
    for side in args.sides:
        length = side * side
        inputs = harness.core_inputs(args.batch, length, length, 1, 8, 32)
        steps = {}
        for name, chunk_size in cases:
            layer = harness.KernelCore(name, chunk_size=chunk_size)
            steps[(name, chunk_size)] = harness.make_step(
                layer, inputs, args.mode
            )
        times = _alternating_times(steps, args.repeats)
        _print_side(side, times)
        ratios[side] = _ratio(times, ("chunked", None), ("dense", None))
    if args.output:
        write_results(args, ratios)


def _alternating_times(steps, repeats):
    """Seconds per call of each step, timed in turns after one warm-up."""
    times = {case: [] for case in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for case, step in steps.items():
            start = time.perf_counter()
            step()
            times[case].append(time.perf_counter() - start)
    return times


def _ratio(times, case, base):
    """Best time of `case` over best time of `base`, if both ran."""
    if case not in times or base not in times:
        return None
    return min(times[case]) / min(times[base])


def write_results(args, ratios):
    """This backend's chunked/dense ratios into `args.output` with the
    machine, date, versions, release and commit, the schema of
    `common/tables.py`'s `thresholds`."""
    import datetime
    import json
    import platform

    import keras
    import provenance

    path = args.output
    result = {"records": []}
    if os.path.exists(path):
        with open(path) as file:
            result = json.load(file)
    result.update(
        kind="kernel_thresholds",
        title="auto's CPU thresholds: chunked/dense time of the "
        "attention core",
        release=__import__("conv_self_attention").__version__,
        commit=provenance.source_commit(),
        started_utc=datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"),
    )
    result["machine"] = {
        "cpus": os.cpu_count(), "processor": platform.machine(),
        "cpu_model": provenance.cpu_model(),
        "description": f"{os.cpu_count()} CPUs "
        f"({provenance.cpu_model() or 'model not recorded'})",
    }
    versions = result.setdefault("versions", {})
    versions.update(keras=keras.__version__, python=platform.python_version())
    versions[args.backend] = __import__(args.backend).__version__
    versions.pop("note", None)
    result["notes"] = [
        f"benchmarks/cpu/kernel_thresholds.py, batch {args.batch}, one "
        f"head, q/k 8 and v 32 channels, square maps (N = M), {args.mode}, "
        f"best of {args.repeats} turns; each ratio measured in one process."
    ]
    result.pop("block_size", None)
    result["records"] = [
        r for r in result["records"] if r["backend"] != args.backend
    ] + [{"backend": args.backend, "side": side, "chunked_vs_dense": value}
         for side, value in ratios.items() if value is not None]
    with open(path, "w") as file:
        json.dump(result, file, indent=1)
    print(f"wrote {path}")


def _print_side(side, times):
    base_case = next(iter(times))
    base = min(times[base_case])
    base_median = statistics.median(times[base_case])
    for (name, chunk_size), seconds in times.items():
        label = name if chunk_size is None else f"{name}[{chunk_size}]"
        print(
            f"{side:4d}x{side:<4d} N={side * side:6d} {label:14s} "
            f"best {min(seconds) * 1e3:9.1f} ms "
            f"({min(seconds) / base:5.2f}x {base_case[0]}), median "
            f"{statistics.median(seconds) * 1e3:9.1f} ms "
            f"({statistics.median(seconds) / base_median:5.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
