"""GPU benchmark of the whole layer: fwd+bwd, one process per backend.

    python benchmarks/gpu/gpu.py                          # installed backends
    python benchmarks/gpu/gpu.py --backends torch jax --budget 200
    python benchmarks/gpu/gpu.py --smoke --output-dir DIR  # CPU check

For the four shapes of `gpu_cases.SHAPES` (32x32 batch 32 C=256, 64x64
batch 16 C=128, 128x128 batch 8 C=64, 256x256 batch 2 C=64), the dtype
policies float32, mixed_bfloat16 and mixed_float16, and the cases `naive`
(the textbook
block of `baselines.py`, same policy) and `SelfAttention2D` with
`attention_implementation` `auto`, `dense`, `chunked` and `fused`
(`gpu_cases.py`), each backend's worker process (`gpu_measure.py`) times
a fwd+bwd step and measures its GPU working memory, then checks the case
(`gpu_check.py`): the kernel and block size the layer reports having run
(`layer.last_kernel`) against the expected one, and the output against a
float32 reference of the same case. A wrong kernel, an error above the
case's tolerance, or a case that raises anything but out of memory (the
exception's first line goes into the table) prints FAIL and makes the
exit status 1; so does a check skipped for memory or a worker that
crashed or was killed.

A case that runs out of memory is recorded as `oom`. `naive` and `auto`
run first for every shape and policy, then the explicit implementations,
and no case starts once `--budget` seconds have passed in that worker
(default: 400 s shared by the backends), so a run cut short still checks
the targets (`gpu_report.py`). The matmul roof (bfloat16 and float32) is
measured in the same process, and the float32 matmul precision in force
is recorded (`gpu_device.py`).

Results go to `--output-dir` (default `benchmarks/results/`) as
`gpu_<device>_<backend>.json` and `.md`, `<device>` being the slugified
device name (`nvidia-h200`), plus `gpu_<device>.md` joining the backends.
`--shapes` picks maps (`benchmarks/gpu/run_gpu.sh` runs the headline ones,
`gpu_cases.HEADLINE_SHAPES`, first). `--smoke` runs tiny maps and few
steps with the same code paths, on CPU too (memory is then None on torch
and TensorFlow); without it, a worker that finds no GPU stops.
"""

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = os.path.dirname(HERE)
for folder in (os.path.join(BENCHMARKS, "common"), HERE):
    if folder not in sys.path:
        sys.path.insert(0, folder)

import gpu_cases  # noqa: E402
import gpu_measure  # noqa: E402
import gpu_report  # noqa: E402
import provenance  # noqa: E402

RESULTS_DIR = os.path.join(BENCHMARKS, "results")
# Seconds of cases for all backends together: with start-up, the matmul
# roof, the last case and the grace period, a run stays within 10 minutes.
TOTAL_BUDGET = 400.0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backends", nargs="+", choices=gpu_cases.BACKENDS, default=None,
        help="default: every installed backend",
    )
    parser.add_argument(
        "--shapes", nargs="+", type=shape_argument, default=None,
        metavar="SIDExBATCHxCHANNELS",
        help="maps to run, e.g. 128x8x64 (default: gpu_cases.SHAPES, or "
        "the smoke mode's tiny two)",
    )
    parser.add_argument("--policies", nargs="+", choices=gpu_cases.POLICIES,
                        default=list(gpu_cases.POLICIES))
    parser.add_argument("--implementations", nargs="+",
                        choices=gpu_cases.IMPLEMENTATIONS,
                        default=list(gpu_cases.IMPLEMENTATIONS))
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
    if args.shapes is None:
        args.shapes = gpu_cases.SMOKE_SHAPES if args.smoke else gpu_cases.SHAPES
    return args


def shape_argument(text):
    """`128x8x64` -> `(128, 8, 64)`: map side, batch, channels."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"a shape must be SIDExBATCHxCHANNELS, three positive integers. "
            f"Received: {text!r}"
        )
    return tuple(int(p) for p in parts)


def installed_backends():
    return [b for b in gpu_cases.BACKENDS
            if importlib.util.find_spec(b) is not None]


def run_backend(backend, args):
    """Runs the worker of `backend`; returns the result dict (records read
    back even when the worker died or was killed)."""
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory() as scratch:
        spec = {
            "backend": backend,
            "shapes": [list(shape) for shape in args.shapes],
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
        "commit": provenance.source_commit(),
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
        text = gpu_measure.without_folders(stderr.read())
    tail = text.strip().splitlines()[-5:]
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
    slug = result["info"]["device"]["slug"]
    base = os.path.join(output_dir, f"gpu_{slug}_{result['backend']}")
    result["targets"] = gpu_report.targets(result)
    with open(base + ".json", "w") as file:
        json.dump(result, file, indent=1)
    with open(base + ".md", "w") as file:
        file.write(gpu_report.markdown(result))
    parts = [f"## GPU benchmark: {result['info']['device']['name']}", ""]
    for backend in gpu_cases.BACKENDS:
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
        return gpu_measure.worker_main(json.loads(args.worker))

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
        problems = gpu_report.run_problems(result)
        if problems:
            print(f"{backend}: FAIL: {'; '.join(problems)}", flush=True)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
