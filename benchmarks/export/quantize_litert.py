"""Quantizes the demo's digit classifier to LiteRT and measures accuracy.

Trains the demo's classifier with the layer (TensorFlow backend), converts
it to LiteRT in float32, with dynamic-range quantization and with full
int8 quantization calibrated on the demo's own training digits, and
reports held-out accuracy of each against the Keras model. The
quantization debugger then names the ops whose int8 outputs drift most
from float, and the int8 model is converted again with those op types
kept in float (`denylisted_ops`), measured the same way. Not part of the
test suite; docs/guide/deploying.md quotes
`benchmarks/results/litert_quantization_<release>.json`, which `--output`
writes (the figures of this `--attention`; the other placement's kept).

    python benchmarks/export/quantize_litert.py --epochs 15 \
        --output benchmarks/results/litert_quantization_0.4.json

`--resolution 64` upsamples the digits to 64x64 (the layer on the image
then attends over 4096 positions); its figures are scoped
`ATTENTION@64/`. The SavedModel is traced with the `dense` kernel, as
`export_model` traces full-integer LiteRT: TensorFlow's converter
crashes on `chunked`, which `auto` traces above 32x32 maps.
"""

import argparse
import os
import pathlib
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402

CALIBRATION_IMAGES = 256
COMMON = pathlib.Path(__file__).resolve().parents[1] / "common"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--attention", default="intermediate", choices=["first", "intermediate"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=16,
                        help="the digits' side in pixels (16: the demo's)")
    parser.add_argument("--output", help="a results file (module docstring)")
    return parser.parse_args(argv)


def representative(images):
    def dataset():
        for image in images[:CALIBRATION_IMAGES]:
            yield [image[None]]

    return dataset


def evaluate(tflite_model, dataset, keras_probabilities, batch=16):
    """Held-out accuracy, and the largest change of a class probability
    against the Keras model. In batches: a dense 64x64 map holds 64 MiB of
    logits per image."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_model)
    index = interpreter.get_input_details()[0]["index"]
    output = interpreter.get_output_details()[0]["index"]
    parts = []
    for start in range(0, len(dataset.x_test), batch):
        images = dataset.x_test[start:start + batch]
        interpreter.resize_tensor_input(index, images.shape, strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, images)
        interpreter.invoke()
        parts.append(interpreter.get_tensor(output).copy())
    probabilities = np.concatenate(parts)
    accuracy = np.mean(probabilities.argmax(axis=-1) == dataset.y_test)
    change = np.abs(probabilities - keras_probabilities).max()
    return float(accuracy), float(change)


def converter_for(saved_model, mode, dataset, denylisted_ops=()):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        converter.representative_dataset = representative(dataset.x_train)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    return converter


def drifting_ops(saved_model, dataset):
    """Per op type, the worst normalized RMSE of its int8 outputs against
    float (the quantization debugger's layer statistics)."""
    import tensorflow as tf

    converter = converter_for(saved_model, "int8", dataset)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=representative(dataset.x_test),
    )
    debugger.run()
    with tempfile.NamedTemporaryFile("w+", suffix=".csv") as file:
        debugger.layer_statistics_dump(file)
        file.seek(0)
        import csv

        rows = list(csv.DictReader(file))
    worst = {}
    for row in rows:
        scale = float(row["scale"]) or 1.0
        error = float(row["mean_squared_error"]) ** 0.5 / scale
        op = row["op_name"]
        worst[op] = max(worst.get(op, 0.0), error)
    return dict(sorted(worst.items(), key=lambda item: -item[1])), debugger


def denylisted_model(debugger, saved_model, dataset, ops):
    import tensorflow as tf

    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(ops)
    )
    selective = tf.lite.experimental.QuantizationDebugger(
        converter=converter_for(saved_model, "int8", dataset),
        debug_dataset=representative(dataset.x_test),
        debug_options=options,
    )
    return selective.get_nondebug_quantized_model()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from conv_self_attention import use_attention_kernel
    from conv_self_attention.demo.classifier import train_classifier
    from conv_self_attention.demo.data import load_dataset

    dataset = load_dataset("digits", args.resolution, seed=args.seed)
    trained = train_classifier(
        args.attention, dataset, args.epochs, seed=args.seed
    )
    model, keras_accuracy = trained[0], trained[2]
    layer = model.get_layer("attention")
    print(f"{dataset.describe()}; attention {args.attention}, kernel "
          f"{layer.last_kernel.implementation}")
    folder = tempfile.mkdtemp()
    saved_model = os.path.join(folder, "saved_model")
    with use_attention_kernel("dense"):
        model.export(saved_model, format="tf_saved_model", verbose=False)
    print(f"exported with {layer.last_kernel.implementation}")
    probabilities = model.predict(dataset.x_test, verbose=0)
    rows = [("Keras (float32)", (keras_accuracy, 0.0), None)]
    keys = ["keras_float32"]
    for mode in ("float32", "dynamic-range", "int8"):
        tflite = converter_for(saved_model, mode, dataset).convert()
        result = evaluate(tflite, dataset, probabilities)
        rows.append((f"LiteRT {mode}", result, len(tflite)))
        keys.append("litert_" + mode.replace("-", "_"))
    worst, debugger = drifting_ops(saved_model, dataset)
    print("int8 op types by worst normalized RMSE against float:")
    for op, error in list(worst.items())[:6]:
        print(f"  {op:24s} {error:.3f}")
    kept = [op for op in worst if op in ("BATCH_MATMUL", "SOFTMAX")]
    for ops in ([kept[0]], kept) if kept else ():
        tflite = denylisted_model(debugger, saved_model, dataset, ops)
        label = f"LiteRT int8, {' and '.join(ops)} in float"
        result = evaluate(tflite, dataset, probabilities)
        rows.append((label, result, len(tflite)))
        keys.append("litert_int8_float_" + "_".join(o.lower() for o in ops))
    print(f"\n| model | held-out accuracy ({len(dataset.x_test)} digits) "
          "| max change of a probability | size (KiB) |\n|---|---|---|---|")
    for label, (accuracy, change), size in rows:
        size = "" if size is None else f"{size / 1024:.0f}"
        print(f"| {label} | {accuracy:.4f} | {change:.4f} | {size} |")
    if args.output:
        write_results(args, dataset, zip(keys, rows, strict=True), worst)
        print(f"wrote {args.output}")


def write_results(args, dataset, rows, worst):
    """`--output`: this placement's figures (`quotes.py`'s `figures` kind:
    `ATTENTION/MODEL/accuracy_percent|max_change|size_kib`,
    `ATTENTION/debugger/OP|max`)."""
    sys.path.insert(0, str(COMMON))
    import provenance

    scope = args.attention
    if args.resolution != 16:
        scope += f"@{args.resolution}"
    figures = {f"{scope}/debugger/{op}": error for op, error in worst.items()}
    figures[f"{scope}/debugger/max"] = max(worst.values(), default=0.0)
    for key, (_, (accuracy, change), size) in rows:
        figures[f"{scope}/{key}/accuracy_percent"] = 100 * accuracy
        if key != "keras_float32":
            figures[f"{scope}/{key}/max_change"] = change
            figures[f"{scope}/{key}/size_kib"] = round(size / 1024)
    provenance.write_figures(
        args.output, scope, figures, "tensorflow",
        title="LiteRT quantization of the demo's digit classifier: held-out "
        "accuracy, largest probability change, size",
        arguments={"epochs": args.epochs, "seed": args.seed,
                   "resolution": args.resolution, "exported_kernel": "dense",
                   "backend": "tensorflow",
                   "held_out_digits": len(dataset.x_test),
                   "calibration_digits": CALIBRATION_IMAGES},
        notes=["intermediate: the layer mid-network; first: on the image. "
               "max_change: the largest change of any class probability "
               "against the Keras model; debugger/OP: the quantization "
               "debugger's RMSE of that op's int8 output against float, in "
               "quantization steps (max: over all ops)."],
    )


if __name__ == "__main__":
    main()
