"""Quantizes the demo's digit classifier to LiteRT and measures accuracy.

Trains the demo's classifier with the layer (TensorFlow backend), converts
it to LiteRT in float32, with dynamic-range quantization and with full
int8 quantization calibrated on the demo's own training digits, and
reports held-out accuracy of each against the Keras model. The
quantization debugger then names the ops whose int8 outputs drift most
from float, and the int8 model is converted again with those op types
kept in float (`denylisted_ops`), measured the same way. Not part of the
test suite; docs/guide/deploying.md quotes its output.

    python benchmarks/export/quantize_litert.py --epochs 15
"""

import argparse
import os
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402

CALIBRATION_IMAGES = 256


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--attention", default="intermediate", choices=["first", "intermediate"]
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def representative(images):
    def dataset():
        for image in images[:CALIBRATION_IMAGES]:
            yield [image[None]]

    return dataset


def evaluate(tflite_model, dataset, keras_probabilities):
    """Held-out accuracy, and the largest change of a class probability
    against the Keras model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_model)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, dataset.x_test.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, dataset.x_test)
    interpreter.invoke()
    output = interpreter.get_output_details()[0]["index"]
    probabilities = interpreter.get_tensor(output)
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
    from conv_self_attention.demo.classifier import train_classifier
    from conv_self_attention.demo.data import load_dataset

    dataset = load_dataset("digits", seed=args.seed)
    trained = train_classifier(
        args.attention, dataset, args.epochs, seed=args.seed
    )
    model, keras_accuracy = trained[0], trained[2]
    layer = model.get_layer("attention")
    print(f"{dataset.describe()}; attention {args.attention}, kernel "
          f"{layer.last_kernel.implementation}")
    folder = tempfile.mkdtemp()
    saved_model = os.path.join(folder, "saved_model")
    model.export(saved_model, format="tf_saved_model", verbose=False)
    probabilities = model.predict(dataset.x_test, verbose=0)
    rows = [("Keras (float32)", (keras_accuracy, 0.0), None)]
    for mode in ("float32", "dynamic-range", "int8"):
        tflite = converter_for(saved_model, mode, dataset).convert()
        result = evaluate(tflite, dataset, probabilities)
        rows.append((f"LiteRT {mode}", result, len(tflite)))
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
    print(f"\n| model | held-out accuracy ({len(dataset.x_test)} digits) "
          "| max change of a probability | size (KiB) |\n|---|---|---|---|")
    for label, (accuracy, change), size in rows:
        size = "" if size is None else f"{size / 1024:.0f}"
        print(f"| {label} | {accuracy:.4f} | {change:.4f} | {size} |")


if __name__ == "__main__":
    main()
