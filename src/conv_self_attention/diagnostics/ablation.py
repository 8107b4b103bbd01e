"""Does a trained model need its attention layers? The ablation test.

`contribution` (in `attention_statistics`) says how large the signal an
attention layer adds is; it does not say whether the model's predictions
depend on it: the layers after it may ignore it. `attention_ablation`
answers that: it evaluates the model as it is, then with each attention
layer's residual branch removed (its `gamma` set to 0, which reduces the
layer exactly to its shortcut), one layer at a time.
"""

import math

import keras
import numpy as np
from keras import ops

from conv_self_attention.checks import positive_int
from conv_self_attention.diagnostics.reaching import attention_layers


def attention_ablation(model, inputs, targets=None, *, metric=None,
                       batch_size=32):
    """Evaluates `model` with each attention layer's branch removed.

    For each self-attention layer (nested models searched, as in
    `attention_statistics`), `gamma` is set to 0 for the evaluation and
    restored afterwards, also when the evaluation raises. A layer called at
    several places (a shared layer) has one `gamma`, so it is removed at
    all of its call sites at once and reported once, under its first path.

    What is measured, with the model intact and with the layer removed:

    - `output_change`: per example, `||ablated - intact|| / ||intact||`
      (L2 norms over every element of every output of the model), averaged
      over the examples whose intact outputs are not all zero. 0 when the
      layer changes nothing.
    - with `targets`: the value of `metric` (each of them, for a dict), or
      by default the compiled loss and metrics (`model.evaluate`); `change`
      is the ablated value minus the intact one (a positive change of a
      loss, or a negative change of an accuracy, means the model needs the
      layer). Without targets, or for a model that is not compiled and no
      `metric`, only `output_change`.

    Args:
        model: keras.Model, a built model (functional, Sequential or
            subclassed) containing self-attention layers.
        inputs: np.ndarray or structure of arrays, the model's inputs
            (held-out data).
        targets: np.ndarray or None, the targets of `inputs`. Defaults
            to `None`.
        metric: callable or dict or None, a callable
            `metric(targets, predictions) -> scalar`, a dict
            `{name: callable}`, or `None` for the compiled loss and
            metrics. Defaults to `None`.
        batch_size: int, examples per prediction step. Defaults to `32`.

    Returns:
        `{layer_path: {"output_change": float, "intact": {name: float},
        "ablated": {name: float}, "change": {name: float}}}`, one entry per
        layer (`layer_path`: its name, prefixed by its nested models'
        names, as in `attention_statistics`); the three metric
        dicts are empty when no metric is evaluated.

    Raises:
        ValueError: if `model` is not a Keras model, has no built
            self-attention layer, or an argument is invalid.

    Example:

    ```python
    import keras
    import numpy as np
    from conv_self_attention import SelfAttention2D
    from conv_self_attention.diagnostics import attention_ablation

    inputs = keras.Input((8, 8, 4))
    x = SelfAttention2D(gamma=0.5, name="attention")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 4))
    y = np.zeros((16, 2))
    result = attention_ablation(model, x.astype("float32"), y)
    print(result["attention"]["output_change"], result["attention"]["change"])
    ```
    """
    layers = _ablated_layers(model)
    batch_size = positive_int("batch_size", batch_size)
    evaluate = _evaluator(model, targets, metric, batch_size)
    intact_outputs, intact = evaluate(inputs)
    results = {}
    for path, layer in layers:
        saved = ops.convert_to_numpy(layer.gamma.value)
        layer.gamma.assign(ops.zeros_like(layer.gamma.value))
        try:
            outputs, ablated = evaluate(inputs)
        finally:
            layer.gamma.assign(saved)
        results[path] = {
            "output_change": relative_change(intact_outputs, outputs),
            "intact": dict(intact),
            "ablated": ablated,
            "change": {name: ablated[name] - intact[name] for name in intact},
        }
    return results


def relative_change(intact, ablated):
    """Mean over examples of `||ablated - intact|| / ||intact||`.

    Args:
        intact: np.ndarray or structure of arrays, the model's outputs
            (every output's first axis is the example).
        ablated: np.ndarray or structure of arrays, the same structure,
            with a layer removed.

    Returns:
        A float; `nan` when every example's intact outputs are all zero.
    """
    intact, ablated = _per_example(intact), _per_example(ablated)
    norms = np.linalg.norm(intact, axis=1)
    kept = norms > 0
    if not kept.any():
        return math.nan
    changes = np.linalg.norm(ablated - intact, axis=1)
    return float(np.mean(changes[kept] / norms[kept]))


def _per_example(outputs):
    """Every output flattened per example and joined: `(examples, n)`."""
    arrays = [np.asarray(ops.convert_to_numpy(x), "float64")
              for x in keras.tree.flatten(outputs)]
    return np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1)


def _ablated_layers(model):
    """`[(path, layer)]`, each layer once (a shared layer: its first path)."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a keras.Model containing self-attention "
            f"layers. Received: model={model!r}"
        )
    unique = {}
    for path, layer in attention_layers(model):
        if layer.built:
            unique.setdefault(id(layer), (path, layer))
    if not unique:
        raise ValueError(
            "`model` must contain at least one built self-attention layer. "
            f"Received: model={model.name!r}"
        )
    return list(unique.values())


def _evaluator(model, targets, metric, batch_size):
    """`inputs -> (outputs, {name: value})` for the chosen metrics."""
    metrics = _metric_callables(metric)

    def predict(inputs):
        return model.predict(inputs, batch_size=batch_size, verbose=0)

    if targets is None:
        return lambda inputs: (predict(inputs), {})
    if metrics is not None:
        def with_metrics(inputs):
            outputs = predict(inputs)
            return outputs, {
                name: float(ops.convert_to_numpy(function(targets, outputs)))
                for name, function in metrics.items()
            }
        return with_metrics
    if not model.compiled:
        return lambda inputs: (predict(inputs), {})

    def compiled(inputs):
        values = model.evaluate(inputs, targets, batch_size=batch_size,
                                verbose=0, return_dict=True)
        return predict(inputs), {name: float(value)
                                 for name, value in values.items()}
    return compiled


def _metric_callables(metric):
    if metric is None:
        return None
    if callable(metric):
        name = getattr(metric, "__name__", getattr(metric, "name", None))
        metric = {name if isinstance(name, str) and name.isidentifier()
                  else "metric": metric}
    if isinstance(metric, dict) and metric and all(
            isinstance(name, str) and callable(function)
            for name, function in metric.items()):
        return {name: _stateless(function) for name, function in
                metric.items()}
    raise ValueError(
        "`metric` must be None, a callable `metric(targets, predictions)` "
        f"or a non-empty dict of them by name. Received: metric={metric!r}"
    )


def _stateless(function):
    """A `keras.metrics.Metric` accumulates over calls: reset it first."""
    if not isinstance(function, keras.metrics.Metric):
        return function

    def fresh(targets, predictions):
        function.reset_state()
        return function(targets, predictions)
    return fresh
