"""The first step of `benchmarks/gpu/run_gpu.sh`: what the machine has, and
whether the run can go on.

    python benchmarks/gpu/gpu_preflight.py --backends torch jax --run-file F
        [--smoke] [--payload .gpu]

It prints Python's version and the payload it uses, pytest's and
hypothesis', then per backend (one child process each, side by side,
with `KERAS_BACKEND` set) the backend's versions with its CUDA and cuDNN,
the device it computes on and the Keras it imports, and where each module
came from (payload, checkout or machine). It writes the backends that
will run to `--run-file` and exits 0, or explains in one line on stderr
why nothing can run and exits 2: pytest or hypothesis does not import,
or no backend can run. A backend that does not import, with which Keras
does not import, or that sees no GPU is "not run: <reason>", and the
others go on. `--smoke` (a CPU dry run)
accepts a backend without a GPU.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

# The checkout: two folders above this one.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PROBE_SECONDS = 90


def where(module, payload):
    """Where `module` was imported from, in words that name no folder."""
    path = os.path.realpath(getattr(module, "__file__", None) or "")
    if payload and path.startswith(os.path.realpath(payload) + os.sep):
        return "payload"
    if path.startswith(os.path.join(ROOT, "src") + os.sep):
        return "checkout"
    return "machine"  # the interpreter's own packages (a venv here)


def _version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _torch_probe():
    import torch

    found = {"version": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version(),
             "gpu": torch.cuda.is_available(),
             "keras_torch_device": os.environ.get("KERAS_TORCH_DEVICE")}
    if found["gpu"]:
        found["device"] = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        found["capability"] = f"{major}.{minor}"
    else:
        found["device"] = "cpu"
    return found


def _jax_probe():
    import jax
    import jaxlib

    devices = jax.devices()
    found = {"version": jax.__version__, "jaxlib": jaxlib.__version__,
             "gpu": devices[0].platform == "gpu",
             "device": " ".join(dict.fromkeys(  # "cpu", "gpu NVIDIA H200"
                 (devices[0].platform, devices[0].device_kind))),
             "capability": getattr(devices[0], "compute_capability", None)}
    # CUDA and cuDNN as installed next to JAX (its plugin and NVIDIA's
    # wheels); a system-wide CUDA has no distribution to ask.
    for name in ("jax-cuda13-plugin", "jax-cuda12-plugin",
                 "nvidia-cudnn-cu13", "nvidia-cudnn-cu12"):
        if _version(name):
            found[name] = _version(name)
    # The cuDNN JAX loaded (a mismatch with torch's is a known way for JAX
    # to find no GPU): only jaxlib's private module tells; absent on CPU
    # builds.
    try:
        from jax._src.lib import cuda_versions

        if cuda_versions is not None:
            found["cudnn loaded"] = cuda_versions.cudnn_get_version()
    except Exception:  # noqa: BLE001, S110 - optional detail
        pass
    return found


def probe(backend, payload):
    """Runs in the child: the backend, then Keras on it. Returns a dict;
    an import that fails is recorded, not raised."""
    found = {"backend": backend}
    try:
        found.update(_torch_probe() if backend == "torch" else _jax_probe())
    except Exception as error:  # noqa: BLE001 - what failed is the result
        found["backend_error"] = f"{type(error).__name__}: {error}"[:300]
        return found
    try:
        import keras

        found["keras"] = keras.__version__
        found["keras_from"] = where(keras, payload)
        found["keras_backend"] = keras.backend.backend()
    except Exception as error:  # noqa: BLE001
        found["keras_error"] = f"{type(error).__name__}: {error}"[:300]
    return found


def run_probes(backends, payload):
    """One child per backend, side by side; `{backend: probe dict}`."""
    children = {}
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend,
                   XLA_PYTHON_CLIENT_PREALLOCATE="false")
        children[backend] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--probe", backend,
             "--payload", payload], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
    deadline = time.monotonic() + PROBE_SECONDS
    found = {}
    for backend, child in children.items():
        try:
            out, err = child.communicate(
                timeout=max(deadline - time.monotonic(), 1))
            lines = out.strip().splitlines()
            found[backend] = json.loads(lines[-1]) if lines else {
                "backend": backend,
                "backend_error": "probe died: " + " ".join(
                    err.strip().splitlines()[-1:])}
            # Why a backend found no GPU is in its warnings (a CUDA
            # plugin that failed to load, say).
            found[backend]["stderr_tail"] = err.strip().splitlines()[-3:]
        except subprocess.TimeoutExpired:
            child.kill()
            found[backend] = {"backend": backend, "backend_error":
                              f"probe still running after {PROBE_SECONDS} s"}
    return found


def describe(found):
    """One line per backend for the log."""
    if "backend_error" in found:
        return f"{found['backend']}: does not import: {found['backend_error']}"
    parts = [f"{found['backend']} {found['version']}"]
    if found["backend"] == "torch":
        parts.append(f"CUDA {found['cuda']}, cuDNN {found['cudnn']}")
    else:
        extras = [f"{k} {v}" for k, v in found.items()
                  if k.startswith(("jax-cuda", "nvidia-cudnn", "cudnn"))]
        parts.append(", ".join([f"jaxlib {found['jaxlib']}", *extras]))
    device = found["device"]
    if found.get("capability"):
        device += f" (compute capability {found['capability']})"
    parts.append(f"device: {device}")
    if found.get("keras_torch_device"):
        parts.append(f"KERAS_TORCH_DEVICE={found['keras_torch_device']}")
    if "keras_error" in found:
        parts.append(f"Keras does not import: {found['keras_error']}")
    else:
        parts.append(f"Keras {found['keras']} ({found['keras_from']})")
    line = "; ".join(parts)
    if not found["gpu"] and found.get("stderr_tail"):
        line += "\n  its last warnings: " + " | ".join(found["stderr_tail"])
    return line


def decide(probes, smoke):
    """`(run, not_run, abort)`: the backends that run, `{backend: why
    not}`, and the one-line reason to stop (None to go on)."""
    run, not_run = [], {}
    for backend, found in probes.items():
        if "backend_error" in found:
            not_run[backend] = f"{backend} does not import"
        elif "keras_error" in found:
            # The other backend's numbers are still worth having.
            not_run[backend] = f"Keras does not import: {found['keras_error']}"
        elif not found["gpu"] and not smoke:
            not_run[backend] = "no GPU"
        else:
            run.append(backend)
    if run:
        return run, not_run, None
    seen = "; ".join(f"{b}: {why}" for b, why in not_run.items())
    if smoke or any("Keras" in why for why in not_run.values()):
        return run, not_run, f"no backend can run ({seen})"
    return run, not_run, f"no backend sees a GPU ({seen})"


def payload_lines(payload):
    """The payload's state for this Python, and the hint a failed Keras
    import needs when the payload lacks this Python's compiled wheels."""
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    if not payload or not os.path.isfile(os.path.join(payload,
                                                      "MANIFEST.txt")):
        return ["payload: none (--smoke: this environment's packages)"], ""
    compiled = sorted(f for f in os.listdir(payload) if f.startswith("cp"))
    if tag in compiled:
        return [f"payload: site/ and {tag}/ first on PYTHONPATH"], ""
    carried = sorted(
        name.split("-")[0] for name in os.listdir(
            os.path.join(payload, compiled[0])) if name.endswith(".dist-info")
    ) if compiled else []
    line = (f"payload: no compiled wheels ({', '.join(carried)}) for {tag}, "
            f"only for "
            f"{' '.join(compiled)}: the machine's own are used if it has "
            "them (prepare the payload with --python-versions "
            f"{sys.version_info[0]}.{sys.version_info[1]})")
    return [line], f" (the payload has no wheels for {tag})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"])
    parser.add_argument("--run-file")
    parser.add_argument("--payload", default="")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--probe")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.payload)), flush=True)
        return 0

    lines, hint = payload_lines(args.payload)
    print(f"Python {sys.version.split()[0]} ({sys.implementation.name})")
    print("\n".join(lines))
    for name in ("pytest", "hypothesis"):
        try:
            module = importlib.import_module(name)
        except Exception as error:  # noqa: BLE001
            print(f"run_gpu.sh: preflight: {name} does not import "
                  f"({type(error).__name__}: {error}){hint}", file=sys.stderr)
            return 2
        print(f"{name} {module.__version__} ({where(module, args.payload)})")
    probes = run_probes(args.backends, args.payload)
    for found in probes.values():
        print(describe(found))
    run, not_run, abort = decide(probes, args.smoke)
    for backend, why in not_run.items():
        print(f"{backend}: not run: {why}")
    if abort:
        print(f"run_gpu.sh: preflight: {abort}"
              f"{hint if 'Keras' in abort else ''}", file=sys.stderr)
        return 2
    print(f"runs: {' '.join(run)}")
    if args.run_file:
        with open(args.run_file, "w") as file:
            file.write(" ".join(run) + "\n")
            for backend, why in not_run.items():
                file.write(f"{backend}: not run: {why}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
