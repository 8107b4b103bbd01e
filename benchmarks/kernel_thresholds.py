"""Measures the `auto` thresholds: attention core, one backend per process.

Times `dense`, `chunked` (several chunk sizes) and `fused` on the attention
core alone (q, k of 8 channels, v of 32, one head, square maps) in one
process and prints each time as a ratio to `dense` at the same size, so
machine noise largely cancels. `conv_self_attention.kernels.auto` cites
the results.

    python benchmarks/kernel_thresholds.py --backend jax --sides 16 32 48 64
"""

import argparse
import os
import sys


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
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _harness

    cases = [(name, None) for name in args.implementations]
    cases += [("chunked", size) for size in args.chunk_sizes]
    print(f"backend={args.backend} mode={args.mode} batch={args.batch}")
    for side in args.sides:
        length = side * side
        inputs = _harness.core_inputs(args.batch, length, length, 1, 8, 32)
        results = {}
        for name, chunk_size in cases:
            layer = _harness.KernelCore(name, chunk_size=chunk_size)
            step = _harness.make_step(layer, inputs, args.mode)
            _, times = _harness.time_step(step, repeats=args.repeats)
            results[(name, chunk_size)] = min(times)
        base = results.get(("dense", None))
        for (name, chunk_size), seconds in results.items():
            ratio = f"{seconds / base:5.2f}x dense" if base else ""
            label = name if chunk_size is None else f"{name}[{chunk_size}]"
            print(f"{side:4d}x{side:<4d} N={length:6d} {label:14s} "
                  f"{seconds * 1e3:9.1f} ms  {ratio}", flush=True)


if __name__ == "__main__":
    main()
