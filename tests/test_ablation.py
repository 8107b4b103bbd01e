"""`attention_ablation`: known answers, against a NumPy reference of the
layer, on every backend; gamma is always restored."""

import keras
import numpy as np
import pytest
import reference

from conv_self_attention import SelfAttention2D
from conv_self_attention.diagnostics import attention_ablation
from conv_self_attention.diagnostics import relative_change


def _x(seed=0, shape=(6, 4, 4, 8)):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _gamma(layer):
    return float(keras.ops.convert_to_numpy(layer.gamma.value))


def _single_layer_model(gamma, name="att"):
    inputs = keras.Input((4, 4, 8))
    layer = SelfAttention2D(gamma=gamma, name=name)
    return keras.Model(inputs, layer(inputs)), layer


def _mse(targets, predictions):
    return np.mean((np.asarray(targets) - np.asarray(predictions)) ** 2)


def test_a_layer_with_gamma_zero_changes_nothing():
    model, layer = _single_layer_model(0.0)
    model.compile(loss="mse", metrics=["mae"])
    x = _x()
    result = attention_ablation(model, x, x + 1.0)["att"]
    assert result["output_change"] == 0.0
    assert set(result["change"]) == {"loss", "mae"}
    assert all(value == 0.0 for value in result["change"].values())
    assert result["intact"] == result["ablated"]


def test_output_and_metric_changes_match_the_reference():
    # With F == C the ablated layer is the identity: outputs equal inputs.
    model, layer = _single_layer_model(0.7)
    x = _x(1)
    intact, _ = reference.reference_self_attention(layer, x)
    result = attention_ablation(model, x, x, metric=_mse)["att"]
    difference = np.linalg.norm((intact - x).reshape(len(x), -1), axis=1)
    norms = np.linalg.norm(intact.reshape(len(x), -1), axis=1)
    assert result["output_change"] == pytest.approx(
        np.mean(difference / norms), rel=1e-4)
    assert result["output_change"] > 0.01
    assert result["intact"]["_mse"] == pytest.approx(
        np.mean((intact - x) ** 2), rel=1e-4)
    assert result["ablated"]["_mse"] == pytest.approx(0.0, abs=1e-12)
    assert result["change"]["_mse"] == pytest.approx(
        -np.mean((intact - x) ** 2), rel=1e-4)
    assert _gamma(layer) == pytest.approx(0.7)


def test_every_output_of_a_multi_output_model_counts():
    inputs = keras.Input((4, 4, 8))
    layer = SelfAttention2D(gamma=0.7, name="att")
    model = keras.Model(inputs, [layer(inputs), keras.layers.Identity()(
        inputs)])
    x = _x(2)
    intact, _ = reference.reference_self_attention(layer, x)
    # The second output is unchanged but counts in the norm of the outputs.
    flat = np.concatenate([intact.reshape(len(x), -1),
                           x.reshape(len(x), -1)], axis=1)
    expected = np.linalg.norm((intact - x).reshape(len(x), -1), axis=1) / (
        np.linalg.norm(flat, axis=1))
    result = attention_ablation(model, x)["att"]
    assert result["output_change"] == pytest.approx(np.mean(expected),
                                                    rel=1e-4)
    assert result["intact"] == result["change"] == {}


def test_layers_are_removed_one_at_a_time_in_nested_models():
    keras.utils.set_random_seed(0)
    inner_inputs = keras.Input((4, 4, 8))
    inner = keras.Model(inner_inputs, SelfAttention2D(
        gamma=0.5, name="att")(inner_inputs), name="inner")
    inputs = keras.Input((4, 4, 8))
    top = SelfAttention2D(gamma=-0.4, name="top")
    model = keras.Model(inputs, top(inner(inputs)))
    x = _x(3)
    result = attention_ablation(model, x)
    assert set(result) == {"inner/att", "top"}
    intact = model.predict(x, verbose=0)
    for path, layer in (("inner/att", inner.get_layer("att")),
                        ("top", top)):
        gamma = _gamma(layer)
        layer.gamma.assign(0.0)
        ablated = model.predict(x, verbose=0)
        layer.gamma.assign(gamma)
        assert result[path]["output_change"] == pytest.approx(
            relative_change(intact, ablated), rel=1e-6)
    assert _gamma(inner.get_layer("att")) == pytest.approx(0.5)
    assert _gamma(top) == pytest.approx(-0.4)


def test_a_shared_layer_is_removed_at_every_call_at_once():
    shared = SelfAttention2D(gamma=0.5, name="shared")
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, shared(shared(inputs)))
    x = _x(4)
    result = attention_ablation(model, x, x, metric=_mse)
    assert list(result) == ["shared"]
    # Removed at both calls: the model is the identity.
    assert result["shared"]["ablated"]["_mse"] == pytest.approx(0.0,
                                                                abs=1e-12)


def test_compiled_metrics_by_default_and_gamma_restored_on_error():
    model, layer = _single_layer_model(0.6)
    model.compile(loss="mse")
    x = _x(5)
    result = attention_ablation(model, x, x)["att"]
    assert result["ablated"]["loss"] == pytest.approx(0.0, abs=1e-10)
    assert result["intact"]["loss"] > 0.0
    calls = []

    def failing(targets, predictions):
        calls.append(1)
        if len(calls) == 2:  # The first ablated evaluation.
            assert _gamma(layer) == 0.0
            raise RuntimeError("metric failed")
        return 0.0

    with pytest.raises(RuntimeError, match="metric failed"):
        attention_ablation(model, x, x, metric=failing)
    assert _gamma(layer) == pytest.approx(0.6)


def test_a_keras_metric_object_is_reset_between_evaluations():
    model, _ = _single_layer_model(0.6)
    x = _x(6)
    result = attention_ablation(model, x, x, metric={
        "mse": keras.metrics.MeanSquaredError()})["att"]
    assert result["ablated"]["mse"] == pytest.approx(0.0, abs=1e-10)


def test_bad_arguments_are_refused():
    model, layer = _single_layer_model(0.5)
    x = _x()
    with pytest.raises(ValueError, match="Received: model="):
        attention_ablation(layer, x)
    inputs = keras.Input((4, 4, 8))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
    with pytest.raises(ValueError, match="Received: model='plain'"):
        attention_ablation(plain, x)
    with pytest.raises(ValueError, match="Received: metric='mse'"):
        attention_ablation(model, x, x, metric="mse")
    with pytest.raises(ValueError, match="batch_size=0"):
        attention_ablation(model, x, batch_size=0)
