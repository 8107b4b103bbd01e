"""The lookup task: its data, its four arms, its tables and the
committed results the docs show."""

import json
import pathlib

import keras
import numpy as np
import pytest

from conv_self_attention.demo import cli
from conv_self_attention.demo import intervals
from conv_self_attention.demo import lookup
from conv_self_attention.demo import lookup_data
from conv_self_attention.demo import lookup_report

ROOT = pathlib.Path(__file__).parents[1]
RESULTS = ROOT / "docs" / "results" / "demo-lookup.json"
GUIDE = ROOT / "docs" / "guide" / "when-does-it-help.md"


def test_the_maps_are_deterministic_per_seed():
    first, again, other = (lookup_data.make_lookup(20, seed)
                           for seed in (3, 3, 4))
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    assert not np.array_equal(first.x, other.x)
    assert first.x.shape == (20, 16, 16, 3) and first.y.shape == (20, 16, 16)
    assert first.blobs.sum(axis=(1, 2)).tolist() == [18] * 20
    np.testing.assert_allclose(
        first.weights, np.where(first.blobs, 1.0, 0.02), rtol=1e-6)


def test_each_blob_is_labelled_with_the_shape_of_the_key_of_its_colour():
    data = lookup_data.make_lookup(50, 0)
    for image, target in zip(data.x, data.y, strict=True):
        top = image[:8]
        for row, col in np.argwhere(target > 0):
            colour = image[row, col]
            # The key of this colour, decoded from the pixels alone.
            cells = np.all(np.isclose(top, colour), axis=-1)
            rows, cols = np.nonzero(cells)
            box = cells[rows.min():rows.min() + 3, cols.min():cols.min() + 3]
            shape, = [index for index, glyph in
                      enumerate(lookup_data.GLYPHS) if np.array_equal(
                          box, glyph.astype(bool))]
            assert target[row, col] == shape + 1


def _reaches(model):
    """Does a change of a top-band key pixel change the features the head
    sees in the bottom band? (Before the softmax, which can saturate.)"""
    features = keras.Model(model.inputs, model.get_layer("head").input)
    x = np.zeros((1, 16, 16, 3), "float32")
    changed = x.copy()
    changed[0, 1, 8] = 1.0
    before, after = (keras.ops.convert_to_numpy(features(v)) for v in
                     (x, changed))
    return not np.array_equal(before[0, 12:], after[0, 12:])


@pytest.mark.parametrize("arm, reaches", [
    ("plain", False), ("dilated", True), ("global_context", True),
    ("attention", True),
])
def test_which_arms_reach_from_the_keys_to_the_blobs(arm, reaches):
    keras.utils.set_random_seed(0)
    model = lookup.build_arm(arm)
    for layer in model.layers:
        if layer.name == "attention":
            layer.gamma.assign(0.5)  # gamma 0 is the shortcut alone.
        if layer.name.startswith(("stem", "dilated")):
            # Positive weights and biases keep the ReLUs open everywhere.
            kernel, bias = layer.get_weights()
            layer.set_weights([np.abs(kernel), np.abs(bias) + 0.1])
    assert _reaches(model) == reaches


def test_parameters_of_the_arms():
    counts = {arm: lookup.build_arm(arm).count_params()
              for arm in lookup.ARMS}
    attention = counts["attention"]
    assert counts["plain"] >= attention
    for arm in ("dilated", "global_context"):
        assert abs(counts[arm] - attention) <= 0.1 * attention, counts


def test_unknown_arm_is_refused():
    with pytest.raises(ValueError, match="arm='lstm'"):
        lookup.build_arm("lstm")


def test_pixel_loss_is_the_cross_entropy_of_every_pixel():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, lookup.CLASSES))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    targets = rng.integers(0, lookup.CLASSES, size=(2, 3, 4))
    expected = -np.log(np.take_along_axis(
        probabilities, targets[..., None], axis=-1))[..., 0]
    got = keras.ops.convert_to_numpy(lookup.pixel_loss(
        targets, probabilities.astype("float32")))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_the_attention_arm_trains_on_this_backend():
    # On torch, Keras' sparse cross-entropy on maps failed in the backward
    # pass; the task trains on every backend now.
    budget = lookup.Budget(train_examples=64, held_out_examples=50,
                           epochs=1, batch_size=32)
    result = lookup.train_arm("attention", 0, budget)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert np.isfinite(result["ablation"]["output_change"])


def test_blob_accuracy_counts_blob_pixels_only():
    targets = np.array([[1, 0], [2, 3]])
    blobs = targets > 0
    probabilities = np.eye(4)[[[1, 2], [2, 1]]]
    assert lookup.blob_accuracy(targets, probabilities, blobs) == (
        pytest.approx(2 / 3))


def test_cli_lookup_options():
    args = cli.build_parser().parse_args(
        ["--task", "lookup", "--lookup-seeds", "5",
         "--lookup-first-seed", "1000", "--query-key-init", "mimetic"])
    assert (args.task, args.lookup_seeds, args.lookup_first_seed,
            args.query_key_init) == ("lookup", 5, 1000, "mimetic")
    defaults = cli.build_parser().parse_args([])
    assert defaults.task == "all" and defaults.lookup_first_seed == 0
    for argv in (["--lookup-first-seed", "-1"], ["--task", "cifar"],
                 ["--lookup-seeds", "0"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(argv)


def test_the_guide_shows_the_committed_lookup_results():
    results = json.loads(RESULTS.read_text())
    lookup_results = results["lookup"]
    assert lookup_results["seeds"] == [1000, 1001, 1002, 1003, 1004]
    for arm in lookup_results["arms"].values():
        values = arm["accuracy"]["values"]
        assert len(values) == 5
        assert arm["accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert len(lookup_results["arms"]["attention"]["ablation"]) == 5
    assert lookup_report.markdown_tables(lookup_results) in GUIDE.read_text()


def test_the_guide_shows_the_committed_initialization_comparison():
    results = json.loads((RESULTS.parent / "init-comparison.json").read_text())
    page = GUIDE.read_text()
    cases = [("lookup task, SelfAttention2D (seeds 0–4)", results["lookup"], 3)]
    cases += [(f"digits, attention {place} (seeds 0–2)",
               results["digits"][place], 4) for place in ("first",
                                                          "intermediate")]
    for label, values, digits in cases:
        independent, mimetic = (intervals.spread(values[name]) for name in
                                ("independent", "mimetic"))
        row = (f"| {label} | {intervals.mean_std(independent, digits)} | "
               f"{intervals.mean_std(mimetic, digits)} | "
               f"{intervals.difference(mimetic, independent, digits)} |")
        assert row in page
