"""Runs exported artifacts in their own runtime, in a process that imports
neither Keras nor conv_self_attention (the test checks `sys.modules`).

Usage: `python export_runner.py RUNTIME MANIFEST`, where RUNTIME is
`saved_model`, `onnx`, `litert` or `torch` and MANIFEST a JSON list of
`{"artifact": path, "inputs": npz path, "outputs": npz path}` (and
optionally `"error_key"`, where a failure is stored). Every array
of an inputs file is fed on its own (a batch of 2, then of 1, through one
loaded artifact, so the batch stays dynamic); the outputs file gets the
results under the same names (a model's further outputs, in the order the
runtime lists them, under `name.1`, `name.2`, ...), or `error` (or the
entry's `error_key`) with the runtime's message. One
process runs all artifacts of one runtime. The tests call `run_runtime`.
"""

import json
import subprocess
import sys

import numpy as np


def _saved_model(path):
    import tensorflow as tf

    # Kept referenced: the endpoint's variables die with the loaded object.
    loaded = tf.saved_model.load(path)
    return lambda x: [
        y.numpy() for y in tf.nest.flatten(loaded.serve(tf.constant(x)))
    ]


def _onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        path, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def _litert(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    # Outputs by the signature's names (`output_0`, `output_1`, ...): the
    # tensor list can hold them in another order (the scores first).
    by_name = interpreter.get_signature_runner().get_output_details()
    outputs = [by_name[name]["index"] for name in sorted(by_name)]

    def run(x):
        # A new batch size means resizing the input and reallocating; as
        # the Deploying guide does it, `strict`: only the dimensions the
        # export left open may change (a fixed height and width refuse).
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, x.shape, strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return [interpreter.get_tensor(index).copy() for index in outputs]

    return run


def _torch(path):
    import torch

    module = torch.export.load(path).module()

    def run(x):
        outputs = module(torch.from_numpy(x))
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        return [output.detach().numpy() for output in outputs]

    return run


LOADERS = {
    "saved_model": _saved_model,
    "onnx": _onnx,
    "litert": _litert,
    "torch": _torch,
}


def run_one(load, entry):
    results = {}
    try:
        run = load(entry["artifact"])
        with np.load(entry["inputs"]) as inputs:
            for name in inputs.files:
                for index, output in enumerate(run(inputs[name])):
                    key = name if index == 0 else f"{name}.{index}"
                    results[key] = np.asarray(output)
    except Exception as error:  # noqa: BLE001 - reported to the test
        key = entry.get("error_key", "error")
        results[key] = np.array(f"{type(error).__name__}: {error}")
    np.savez(entry["outputs"], **results)


def main(runtime, manifest):
    # TensorFlow imports Keras when present; the artifacts must not need it
    # (nor the package), so importing either here fails.
    for name in ("keras", "conv_self_attention"):
        sys.modules[name] = None
    load = LOADERS[runtime]
    with open(manifest) as file:
        entries = json.load(file)
    for entry in entries:
        run_one(load, entry)
    leaked = sorted(
        name
        for name in ("keras", "conv_self_attention")
        if sys.modules.get(name) is not None
    )
    print(json.dumps({"imported": leaked}))


def run_runtime(runtime, entries, folder):
    """Runs `entries` (manifest dicts) in one runner process of `runtime`;
    returns its report, `{"imported": [...]}` (what it imported of Keras
    and the package: nothing)."""
    manifest = folder / f"{runtime}.json"
    manifest.write_text(json.dumps(entries))
    result = subprocess.run(
        [sys.executable, __file__, runtime, str(manifest)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main(*sys.argv[1:])
