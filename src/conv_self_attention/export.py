"""`export_model`: Keras' `model.export` after the checks that refuse, with
an error saying what to do instead, the models whose export would fail
later (when loaded, or deep in a converter)."""

import contextlib

import keras

from conv_self_attention.checks import one_of
from conv_self_attention.kernels.device import traced_for_export
from conv_self_attention.layers import BaseSelfAttention
from conv_self_attention.layers import use_attention_kernel
from conv_self_attention.layers.kernel_choice import requested_kernel

FORMATS = ("tf_saved_model", "onnx", "openvino", "litert", "torch")
# (format, compute dtype): the backends whose artifact fails, and how, as
# tried with a Conv2D -> SelfAttention2D model (Keras 3.15, ONNX Runtime
# 1.32, TensorFlow 2.21). SavedModels and `torch.export` programs of mixed
# precision models load and run, and float16 ONNX files of every backend.
REFUSED_DTYPES = {
    ("onnx", "bfloat16"): (
        ("tensorflow", "jax", "torch"),
        "ONNX Runtime cannot load or run its bfloat16 Conv",
    ),
    ("litert", "bfloat16"): (
        ("tensorflow",),
        "TensorFlow's LiteRT converter fails on its 16-bit Conv2D",
    ),
    ("litert", "float16"): (
        ("tensorflow",),
        "TensorFlow's LiteRT converter fails on its 16-bit Conv2D",
    ),
}


def export_model(
    model, filepath, format="tf_saved_model", input_signature=None, **kwargs
):
    """Exports `model` with `model.export`, after checking that it can.

    What differs from calling `model.export` directly:

    - A model with layers computing in 16 bits (a mixed precision policy)
      is refused where its file would fail to load or to convert:
      `"litert"` on TensorFlow, and `"onnx"` in bfloat16 (as tried: the
      Deploying guide's "Refused configurations"). Export
      `float32_copy(model)` instead. Nothing is cast silently.
    - A functional or `Sequential` model that was built but never called
      exports: its inputs' shapes and dtypes (the batch left open) are the
      `input_signature`, as Keras derives it once the model has been
      called (Keras' ONNX export refuses such a model). A subclassed model
      that was never called is refused by Keras: call it on a batch
      first, or give `input_signature`.
    - Full-integer LiteRT (`format="litert"` with a
      `representative_dataset`) traces the `dense` kernel, which
      `layer.last_kernel` shows afterwards: TensorFlow's converter crashes
      the process (a segfault) on `chunked`, which `auto` traces above
      32x32 maps. A layer asking for `chunked` or `fused` (its
      `attention_implementation`, or `use_attention_kernel`) is refused.
    - On JAX, the chunked kernel is traced unrolled, as ops that ONNX
      Runtime fuses (`model.export` traces the training form, an ONNX
      `Loop` that runs several times slower); its blocks then span the
      whole batch, as torch's exports do (`layer.last_kernel.exporting`).
    - Nothing else: the artifact is Keras'. Its outputs come in the
      model's order in every runtime except LiteRT's
      `get_output_details()`; the Deploying guide's "Outputs by name"
      says how each runtime finds them (LiteRT's signature runner names
      them `output_0`, `output_1`, ... by position).

    Args:
        model: keras.Model, the model to export.
        filepath: str or path, where to write the artifact (a folder for
            `"tf_saved_model"`, a `.tflite` file for `"litert"`).
        format: str, one of `"tf_saved_model"`, `"onnx"`, `"openvino"`,
            `"litert"` and `"torch"`, as in `model.export` (which formats a
            backend offers: the Deploying guide). Defaults to
            `"tf_saved_model"`.
        input_signature: list or None, the inputs' shapes and dtypes, as
            in `model.export`. Defaults to `None`: the model's own.
        **kwargs: passed on to `model.export` (`verbose`, and the format's
            own arguments, such as `target_spec` for `"litert"` or
            `dynamic_shapes` for `"torch"`).

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: for an unknown `format`, a model computing in 16 bits
            for a format that cannot hold it, or full-integer LiteRT of a
            layer asking for `chunked` or `fused`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid value for argument `model`. Expected a `keras.Model`. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    one_of("format", format, FORMATS)
    _refuse_half_precision(model, format)
    kernel = contextlib.nullcontext()
    calibration = kwargs.get("representative_dataset")
    if format == "litert" and calibration is not None:
        kernel = _full_integer_kernel(model, calibration)
    if input_signature is None and getattr(model, "inputs", None):
        # What Keras reads from a functional model, given here so that a
        # model that was never called exports too.
        input_signature = _inputs_signature(model)
    with kernel, traced_for_export():
        model.export(
            filepath, format=format, input_signature=input_signature,
            **kwargs,
        )


def float32_copy(model):
    """A copy of a functional or `Sequential` model computing in float32.

    Each layer is rebuilt from its config with the `"float32"` dtype
    policy, and the copy gets the model's weights (a mixed-precision
    model keeps them in float32 already, so they are the same numbers).
    This is what `export_model` asks for where a format cannot hold
    16-bit computation: the copy's outputs differ from the model's by the
    rounding that float32 no longer does.

    Args:
        model: keras.Model, a functional or `Sequential` model (a
            subclassed model has no config to rebuild its layers from:
            construct it again with `dtype="float32"` and `set_weights`).

    Returns:
        A new `keras.Model` of the same architecture and weights.

    Raises:
        TypeError: if `model` is not a functional or `Sequential` model.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs"):
        raise TypeError(
            "Invalid value for argument `model`. Expected a functional or "
            f"`Sequential` keras.Model. Received: model={model!r}"
        )

    def as_float32(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return type(layer).from_config(config)

    copy = keras.models.clone_model(
        model, clone_function=as_float32, recursive=True
    )
    copy.set_weights(model.get_weights())
    return copy


def _layers(layer):
    """`layer` and every layer it nests (models inside models too)."""
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _layers(inner)


def _refuse_half_precision(model, format):
    backend = keras.backend.backend()
    for layer in _layers(model):
        backends, why = REFUSED_DTYPES.get(
            (format, layer.compute_dtype), ((), "")
        )
        if backend not in backends:
            continue
        layers = [
            f"{inner.name!r} ({inner.dtype_policy.name})"
            for inner in _layers(model)
            if inner.compute_dtype == layer.compute_dtype
        ]
        raise ValueError(
            f"Invalid value for argument `format`: {format!r} files of "
            f"models computing in {layer.compute_dtype} fail ({why}), and "
            f"these layers do: {', '.join(layers)}. Export a float32 copy "
            f"instead, `export_model(float32_copy(model), ...)`, or the "
            f"model as it is to 'tf_saved_model' or 'torch'. "
            f"Received: format={format!r}"
        )


def _full_integer_kernel(model, calibration):
    """`use_attention_kernel("dense")` for a full-integer LiteRT export,
    whose converter crashes on `chunked`; `ValueError` where a layer asks
    for another kernel than `auto` or `dense`."""
    refused = [
        f"{layer.name!r} ({requested_kernel(layer)[0]})"
        for layer in _layers(model)
        if isinstance(layer, BaseSelfAttention)
        and requested_kernel(layer)[0] not in ("auto", "dense")
    ]
    if refused:
        raise ValueError(
            "Invalid value for argument `representative_dataset`: "
            "full-integer LiteRT converts only the `dense` kernel "
            "(TensorFlow's converter crashes on `chunked`), and these "
            f"layers ask for another: {', '.join(refused)}. Export inside "
            '`with use_attention_kernel("dense"):` (or "auto"), or '
            "quantize the dynamic range only (no `representative_dataset`)."
            f" Received: representative_dataset={calibration!r}"
        )
    return use_attention_kernel("dense")


def _inputs_signature(model):
    """The specs of a functional or Sequential model's inputs, the batch
    left open, as Keras' own exporters derive them."""

    def spec(tensor):
        return keras.InputSpec(
            shape=(None, *tensor.shape[1:]), dtype=tensor.dtype,
            name=tensor.name,
        )

    return [keras.tree.map_structure(spec, model.input)]
