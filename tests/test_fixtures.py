"""Model files written on every backend load on this one, in safe mode.

`tests/fixtures/` holds a small `.keras` model per backend with its inputs
and outputs (see `make_fixtures.py`). They are regenerated only on a
deliberate format change, so they also guard files written by this release.
"""

import json
import os
import zipfile

import keras
import numpy as np
import pytest
from reference import reference_self_attention

import conv_self_attention  # noqa: F401 (registers the layers)

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures")
BACKENDS = ("jax", "tensorflow", "torch")


def fixture_path(backend, extension):
    return os.path.join(FIXTURE_DIR, f"model_{backend}.{extension}")


@pytest.mark.parametrize("written_on", BACKENDS)
def test_fixture_reproduces_outputs(written_on):
    model = keras.saving.load_model(
        fixture_path(written_on, "keras"), safe_mode=True
    )
    with np.load(fixture_path(written_on, "npz")) as expected:
        outputs = model(expected["inputs"], training=False)
        assert len(outputs) == 3
        for index, output in enumerate(outputs):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(output),
                expected[f"output_{index}"],
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"output {index} of the {written_on} fixture",
            )


@pytest.mark.parametrize("written_on", BACKENDS)
def test_stored_outputs_match_reference(written_on):
    # The stored outputs themselves are right: the NumPy reference, fed the
    # loaded weights, reproduces them layer by layer.
    model = keras.saving.load_model(
        fixture_path(written_on, "keras"), safe_mode=True
    )
    with np.load(fixture_path(written_on, "npz")) as stored:
        inputs = stored["inputs"]
        expected = [stored[f"output_{index}"] for index in range(3)]
    features, _ = reference_self_attention(
        model.get_layer("attention_2d"), inputs
    )
    seed_style, _ = reference_self_attention(
        model.get_layer("seed_attention"), np.transpose(features, (0, 3, 1, 2))
    )
    sequence = features.reshape(features.shape[0], -1, features.shape[-1])
    outputs, scores = reference_self_attention(
        model.get_layer("attention_1d"), sequence
    )
    actuals = [seed_style, outputs, scores]
    for actual, stored_output in zip(actuals, expected, strict=True):
        np.testing.assert_allclose(actual, stored_output, rtol=1e-5, atol=1e-5)


def test_fixtures_are_small():
    for backend in BACKENDS:
        for extension in ("keras", "npz"):
            assert os.path.getsize(fixture_path(backend, extension)) < 100_000


def tampered_copy(tmp_path, layer_name, change):
    """A copy of a fixture whose layer `layer_name` has `change` in its
    config."""
    source = fixture_path("jax", "keras")
    target = tmp_path / "tampered.keras"
    with zipfile.ZipFile(source) as reader, zipfile.ZipFile(
        target, "w"
    ) as writer:
        for item in reader.infolist():
            data = reader.read(item)
            if item.filename == "config.json":
                data = _change_layer_config(data, layer_name, change)
            writer.writestr(item, data)
    return target


def _change_layer_config(data, layer_name, change):
    config = json.loads(data)
    for layer in config["config"]["layers"]:
        if layer["config"]["name"] == layer_name:
            layer["config"].update(change)
            return json.dumps(config)
    raise AssertionError(f"no layer {layer_name} in the fixture")


@pytest.mark.parametrize(
    "layer_name, change, text",
    [
        ("attention_2d", {"bogus_argument": 1}, "bogus_argument"),
        ("attention_2d", {"num_heads": "two"}, "num_heads"),
        ("attention_1d", {"pool_size": [3, 3]}, "pool_size"),
        ("attention_1d", {"gamma": "0.5"}, "gamma"),
        ("seed_attention", {"data_format": "NCHW"}, "data_format"),
        ("seed_attention", {"num_head": 2}, "num_head"),
    ],
)
def test_bad_config_names_the_argument(tmp_path, layer_name, change, text):
    path = tampered_copy(tmp_path, layer_name, change)
    with pytest.raises(ValueError, match=text):
        keras.saving.load_model(path, safe_mode=True)
