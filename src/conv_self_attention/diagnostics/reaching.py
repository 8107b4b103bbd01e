"""The inputs that reach each self-attention layer of a model."""

import keras
import numpy as np
from keras import ops

from conv_self_attention.layers import BaseSelfAttention
from conv_self_attention.layers.shapes import check_input_dtype
from conv_self_attention.layers.shapes import check_input_shape


def attention_layers(model):
    """Returns `(path, layer)` for every self-attention layer in `model`.

    Args:
        model: keras.Model, searched with the models nested in it.

    Returns:
        A list of `(path, layer)`: `path` is the layer's name prefixed by
        the names of the nested models that contain it, joined by `/`.
    """
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, BaseSelfAttention):
            found.append((layer.name, layer))
        elif getattr(layer, "layers", None):
            found.extend(
                (f"{layer.name}/{path}", inner)
                for path, inner in attention_layers(layer)
            )
    return found


def inputs_per_layer(model_or_layer, inputs):
    """`[(path, layer, numpy inputs of the layer)]` for every layer."""
    if isinstance(model_or_layer, BaseSelfAttention):
        layer = model_or_layer
        if not layer.built:
            # Its weights would be fresh random ones, not trained ones.
            raise ValueError(
                "`model_or_layer` must be a built layer (called on inputs "
                "or loaded), not one whose weights do not exist yet. "
                f"Received: model_or_layer={layer.name!r} (not built)"
            )
        return [(layer.name, layer, _layer_batch(layer, inputs))]
    if not isinstance(model_or_layer, keras.Model):
        raise ValueError(
            "`model_or_layer` must be a keras.Model or a self-attention "
            f"layer. Received: model_or_layer={model_or_layer!r}"
        )
    found = _model_inputs_per_layer(model_or_layer, inputs, prefix="")
    if not found:
        raise ValueError(
            "`model_or_layer` contains no self-attention layer. Received: "
            f"model_or_layer={model_or_layer.name!r}"
        )
    return found


def _model_inputs_per_layer(model, inputs, prefix):
    """Runs `model` up to each attention layer; recurses into nested ones."""
    targets = [
        layer for layer in model.layers
        if isinstance(layer, BaseSelfAttention)
        or (getattr(layer, "layers", None) and attention_layers(layer))
    ]
    if not targets:
        return []
    symbolic = _symbolic_inputs(model)
    _check_model_inputs(model, symbolic, inputs)
    # One entry per call of each target in `model`: a shared layer is
    # measured at every call site, each under its own path.
    sites = []
    for layer in targets:
        calls = _inputs_in_graph(model, layer)
        for number, tensors in enumerate(calls):
            name = prefix + layer.name
            if len(calls) > 1:
                name += f"/call_{number}"
            sites.append((name, layer, tensors))
    reaching = keras.Model(symbolic, [tensors for _, _, tensors in sites])
    found = []
    arrays = _call_in_batches(reaching, inputs)
    for (name, layer, _), array in zip(sites, arrays, strict=True):
        if isinstance(layer, BaseSelfAttention):
            found.append((name, layer, array))
        else:
            found.extend(_model_inputs_per_layer(layer, array, name + "/"))
    return found


def _inputs_in_graph(model, layer):
    """The symbolic inputs of each of `layer`'s calls in `model`'s graph.

    `layer.input` is the input of the layer's first call, which for a
    nested functional model is its own construction, not its call in
    `model`, and a shared layer has several calls. Keras has no public
    accessor for them, so this reads the nodes the same way Keras' own
    functional serialization does.
    """
    # A Sequential model keeps its graph in a functional model.
    nodes = getattr(getattr(model, "_functional", model), "_nodes", ())
    calls = []
    for index, node in enumerate(layer._inbound_nodes):
        if f"{id(layer)}_ib-{index}" in nodes:
            tensors = node.input_tensors
            calls.append(tensors[0] if len(tensors) == 1 else tensors)
    return calls or [layer.input]


def _symbolic_inputs(model):
    # `input` keeps the structure a functional model was built with (one
    # tensor, a list or a dict): the structure callers pass. A Sequential
    # model has only `inputs`; a subclassed model has neither.
    symbolic = getattr(model, "input", None) if hasattr(
        model, "_inputs_struct") else getattr(model, "inputs", None)
    if isinstance(symbolic, list) and len(symbolic) == 1:
        symbolic = symbolic[0]
    if symbolic is None or symbolic == []:
        raise ValueError(
            "`model_or_layer` must be a functional or Sequential model "
            "with known inputs. For a subclassed model, pass the "
            "self-attention layer and the inputs that reach it. Received: "
            f"model_or_layer={model.name!r}"
        )
    return symbolic


def _check_model_inputs(model, symbolic, inputs):
    expected = keras.tree.flatten(symbolic)
    received = keras.tree.flatten(inputs)
    shapes = [tuple(getattr(x, "shape", np.shape(x))) for x in received]
    fits = len(expected) == len(received) and all(
        len(shape) == len(tensor.shape)
        and all(e is None or e == r for e, r in zip(
            tensor.shape, shape, strict=True))
        for tensor, shape in zip(expected, shapes, strict=True)
    )
    if not fits:
        wanted = [tuple(tensor.shape) for tensor in expected]
        raise ValueError(
            f"`inputs` must match the inputs of model {model.name!r}, "
            f"shaped {wanted}. Received: inputs shapes {shapes}"
        )


def _call_in_batches(model, inputs, batch_size=128):
    """`model(inputs)` as a list of NumPy arrays, in batches."""
    total = keras.tree.flatten(inputs)[0].shape[0]
    pieces = []
    for start in range(0, total, batch_size):
        batch = keras.tree.map_structure(
            lambda x, start=start: x[start : start + batch_size], inputs
        )
        outputs = model(batch, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]  # Keras unwraps a list of one output.
        pieces.append([ops.convert_to_numpy(x) for x in outputs])
    return [np.concatenate(arrays) for arrays in zip(*pieces, strict=True)]


def _layer_batch(layer, inputs):
    """Checks that `inputs` fit `layer`; returns them as an array."""
    if not hasattr(inputs, "shape"):
        inputs = np.asarray(inputs)
    shape = tuple(inputs.shape)
    try:
        check_input_shape(layer, shape)
        if layer.built:
            channels = layer.input_spec.axes[layer.channel_axis]
            if shape[layer.channel_axis] != channels:
                raise ValueError(
                    f"the layer was built for {channels} channels. "
                    f"Received: input_shape={shape}"
                )
    except ValueError as error:
        raise ValueError(
            f"`inputs` do not fit layer {layer.name!r}: {error}"
        ) from None
    if shape[0] == 0:
        raise ValueError(
            "`inputs` must hold at least one example. Received: "
            f"inputs.shape={shape}"
        )
    # The layer's own check and words: integer inputs are refused.
    check_input_dtype(layer, inputs.dtype)
    return inputs
