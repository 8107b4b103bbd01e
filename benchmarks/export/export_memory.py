"""Working memory of each kernel in the runtimes that run exports on a CPU.

Exports Conv2D -> SelfAttention2D -> Conv2D (16 channels, batch left
dynamic) with each kernel (`use_attention_kernel`) to the formats of this
backend, then runs each artifact on one batch-1 image in a fresh process
that imports neither Keras nor the package (`tests/export_runner.py`'s
loaders) and reports the peak RSS after loading and after inference; their
difference is the inference's working memory. docs/guide/deploying.md
quotes `benchmarks/results/export_memory_<release>.json`; `--output`
writes this backend's figures into such a file (its other backends' kept).

    python benchmarks/export/export_memory.py --backend tensorflow --side 128
    python benchmarks/export/export_memory.py --backend torch --side 128 \
        --output benchmarks/results/export_memory_0.4.json
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

TESTS = pathlib.Path(__file__).resolve().parents[2] / "tests"
COMMON = TESTS.parent / "benchmarks" / "common"
FORMATS = {
    "tensorflow": ("tf_saved_model", "onnx", "litert"),
    "jax": ("tf_saved_model", "onnx"),
    "torch": ("onnx",),
}
RUNTIMES = {"tf_saved_model": "saved_model"}
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}


def peak_mib():
    """This process's peak RSS. Not `ru_maxrss`, which Linux carries over
    `exec` from the parent that forked the process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure(runtime, artifact, side):
    """In the child: peak RSS after loading, after one inference."""
    sys.path.insert(0, str(TESTS))
    for name in ("keras", "conv_self_attention"):
        sys.modules[name] = None
    import numpy as np
    from export_runner import LOADERS

    run = LOADERS[runtime](artifact)
    loaded = peak_mib()
    run(np.ones((1, side, side, 16), "float32"))
    print(json.dumps({"loaded": loaded, "peak": peak_mib()}))


def export_all(backend, side, folder):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from conv_self_attention import SelfAttention2D
    from conv_self_attention import use_attention_kernel

    inputs = keras.Input((side, side, 16))
    layer = SelfAttention2D(gamma=1.0, name="attention")
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1)(layer(inputs)))
    model(np.zeros((1, side, side, 16), "float32"))  # torch exports need it
    artifacts = []
    for kernel in ("dense", "chunked", "fused"):
        for fmt in FORMATS[backend]:
            path = os.path.join(folder, f"{kernel}-{fmt}")
            path += SUFFIXES.get(fmt, "")
            kwargs = {}
            if fmt == "litert":
                import tensorflow as tf

                builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
                kwargs["target_spec"] = {"supported_ops": builtins}
            with use_attention_kernel(kernel):
                model.export(path, format=fmt, verbose=False, **kwargs)
            traced = layer.last_kernel
            artifacts.append((kernel, traced.chunk_size, fmt, path))
    return artifacts


def write_results(path, backend, side, figures):
    """This backend's `figures` into the results file `path` (its other
    backends' kept; `common/provenance.py`'s `write_figures`)."""
    sys.path.insert(0, str(COMMON))
    import provenance

    provenance.write_figures(
        path, backend, figures, backend,
        title="Working memory of one batch-1 inference of each kernel's "
        "export in each runtime, on a CPU",
        arguments={"side": side, "batch": 1, "channels": 16},
        notes=["working_mib: peak RSS (VmHWM) of a fresh runtime process "
               "after one inference minus its peak after loading, MiB; "
               "chunk_size: the block size the exported chunked kernel "
               "traced."],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--output", help="a results file (module docstring)")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        runtime, artifact, side = args.measure
        return measure(runtime, artifact, int(side))
    folder = tempfile.mkdtemp()
    artifacts = export_all(args.backend, args.side, folder)
    print(f"{args.backend} exports, {args.side}x{args.side}, batch 1, "
          "16 channels; MiB of peak RSS")
    print("| kernel | format | after loading | after inference | working |")
    print("|---|---|---|---|---|")
    figures = {}
    for kernel, chunk_size, fmt, path in artifacts:
        command = [
            sys.executable, __file__, "--measure",
            RUNTIMES.get(fmt, fmt), path, str(args.side),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            error = result.stderr.strip().splitlines()[-1][:80]
            print(f"| {kernel} | {fmt} | failed: {error} | | |")
            continue
        rss = json.loads(result.stdout.strip().splitlines()[-1])
        label = kernel if chunk_size is None else f"{kernel} [{chunk_size}]"
        print(f"| {label} | {fmt} | {rss['loaded']:.0f} | {rss['peak']:.0f} "
              f"| {rss['peak'] - rss['loaded']:.0f} |")
        key = f"{args.backend}/{kernel}/"
        figures[key + f"{fmt}/working_mib"] = round(
            rss["peak"] - rss["loaded"])
        if chunk_size is not None:
            figures[key + "chunk_size"] = chunk_size
    if args.output:
        write_results(args.output, args.backend, args.side, figures)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
