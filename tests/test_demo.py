"""Tests of the demo: its parts per backend, and a `--quick` run in the
torch pass."""

import json
import math
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import BACKEND
from keras import ops

import conv_self_attention
from conv_self_attention.demo import cli
from conv_self_attention.demo import data
from conv_self_attention.demo import frechet
from conv_self_attention.demo import gan
from conv_self_attention.demo import intervals
from conv_self_attention.demo import networks
from conv_self_attention.diagnostics import BASELINES
from conv_self_attention.diagnostics import STATISTICS
from conv_self_attention.diagnostics import attention_statistics


def test_frechet_distance_of_a_set_to_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(300, 5))
    assert frechet.frechet_distance(features, features) == pytest.approx(
        0.0, abs=1e-6
    )


def test_frechet_distance_of_an_affine_copy():
    # b = 2a + 1: |mu_a - mu_b|^2 = |mu_a + 1|^2, S_b = 4 S_a and
    # Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = Tr(S_a + 4 S_a - 4 S_a) = Tr(S_a).
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4))
    expected = np.sum((a.mean(0) + 1.0) ** 2) + np.trace(np.cov(a.T))
    assert frechet.frechet_distance(a, 2.0 * a + 1.0) == pytest.approx(
        expected, rel=1e-6
    )


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(3, 4\)"):
        frechet.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))


def test_digits_are_upsampled_into_minus_one_one():
    dataset = data.load_digits()
    assert dataset.x_train.shape == (1347, 16, 16, 1)
    assert dataset.x_test.shape == (450, 16, 16, 1)
    assert dataset.x_train.min() == -1.0 and dataset.x_train.max() == 1.0
    assert dataset.x_train.dtype == np.float32


def test_mnist_without_cached_file_gives_a_clear_message(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert data.mnist_cache_path() == str(tmp_path / "datasets" / "mnist.npz")
    assert cli.main(["--dataset", "mnist"]) == 2
    error = capsys.readouterr().err
    assert "not cached" in error and "--dataset digits" in error


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--backend", "numpy"]])
def test_cli_rejects_bad_options(argv):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(argv)


def test_cli_reruns_itself_for_another_backend(monkeypatch):
    """Keras is already loaded with this backend, so asking for another
    one starts a fresh process with `KERAS_BACKEND` set."""
    other = next(b for b in cli.BACKENDS if b != keras.backend.backend())
    calls = []

    def fake_run(command, env, check):
        calls.append((command, env))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.delenv(cli._CHILD_FLAG, raising=False)
    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert cli.main(["--backend", other, "--quick"]) == 0
    (command, env), = calls
    assert command[-3:] == ["--backend", other, "--quick"]
    assert env["KERAS_BACKEND"] == other


def test_cli_defaults():
    args = cli.build_parser().parse_args([])
    assert args.dataset == "digits" and args.output_dir == "demo_output"
    assert not args.quick and args.backend is None
    assert args.seeds == 1 and args.classifier_seeds is None


def test_spread_and_differences():
    one = intervals.spread([0.5])
    assert one == {"mean": 0.5, "std": None, "values": [0.5]}
    values = intervals.spread([1.0, 2.0, 3.0])
    assert values["mean"] == 2.0 and values["std"] == pytest.approx(1.0)
    baseline = intervals.spread([1.0, 1.0, 1.0])
    # s.e. = sqrt(1 / 3 + 0 / 3); t(0.975, 2 d.f.) = 4.303 (tables).
    delta, error, half_width = intervals.difference_interval(values, baseline)
    assert (delta, error) == (1.0, pytest.approx(math.sqrt(1 / 3)))
    assert half_width == pytest.approx(4.3027 * math.sqrt(1 / 3), rel=1e-4)
    assert intervals.difference(values, baseline, 2) == (
        "+1.00 (s.e. 0.58; 95%: -1.48 to +3.48)")
    assert intervals.difference(one, baseline, 1) == "-0.5"


@pytest.mark.parametrize("attention", networks.ATTENTION_PLACES)
def test_classifier_variants(attention):
    model = networks.build_classifier(attention)
    assert model.output_shape == (None, 10)
    names = [layer.name for layer in model.layers]
    assert ("attention" in names) == (attention != "none")
    if attention == "first":
        assert names.index("attention") == 1
        assert model.get_layer("attention").output.shape[-1] == 8


def test_classifier_rejects_unknown_place():
    with pytest.raises(ValueError, match="attention='last'"):
        networks.build_classifier("last")


def test_spectral_conv_converges_to_unit_spectral_norm():
    layer = networks.SpectralConv2D(8, 3)
    x = np.ones((1, 6, 6, 4), "float32")
    for _ in range(50):
        layer(x, training=True)
    kernel = ops.convert_to_numpy(layer.normalized_kernel(training=False))
    sigma = np.linalg.svd(kernel.reshape(-1, 8), compute_uv=False)[0]
    # Power iteration converges at the rate of the top two singular values'
    # ratio, so allow a little slack.
    assert sigma == pytest.approx(1.0, rel=1e-2)
    assert layer.compute_output_shape((None, 6, 6, 4)) == (None, 6, 6, 8)


def test_gan_step_updates_each_network_in_its_own_step():
    """The backend-neutral trainer: D's step leaves G's weights alone and
    G's step leaves D's trainable weights alone, on every backend."""
    keras.utils.set_random_seed(0)
    generator = networks.build_generator(attention=True)
    discriminator = networks.build_discriminator(attention=True)
    trainer = gan.GANTrainer(generator, discriminator)
    real = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1))
    trainer.train_step(real.astype("float32"))  # Builds both optimizers.

    def trainable(model):
        model_trainable = model.trainable
        model.trainable = True
        values = [ops.convert_to_numpy(w.value).copy()
                  for w in model.trainable_weights]
        model.trainable = model_trainable
        return values

    g_before, d_before = trainable(generator), trainable(discriminator)
    d_loss, g_loss = trainer.train_step(real.astype("float32"))
    assert np.isfinite(d_loss) and np.isfinite(g_loss)
    g_after, d_after = trainable(generator), trainable(discriminator)
    for before, after in ((g_before, g_after), (d_before, d_after)):
        assert any(
            not np.array_equal(a, b)
            for a, b in zip(before, after, strict=True)
        )
    # Replay only the G step: D's trainable weights must not move.
    d_frozen = trainable(discriminator)
    discriminator.trainable = False
    trainer.combined.train_on_batch(trainer.latent(8), np.ones((8, 1)))
    for before, after in zip(d_frozen, trainable(discriminator), strict=True):
        np.testing.assert_array_equal(before, after)
    # Replay only the D step: G's weights must not move.
    g_frozen = trainable(generator)
    discriminator.trainable = True
    fake = trainer.sampler.predict_on_batch(trainer.latent(8))
    labels = np.concatenate([np.ones((8, 1)), -np.ones((8, 1))])
    discriminator.train_on_batch(np.concatenate([real, fake]), labels)
    for before, after in zip(g_frozen, trainable(generator), strict=True):
        np.testing.assert_array_equal(before, after)


def test_gan_trainer_records_the_attention_statistics():
    keras.utils.set_random_seed(0)
    generator = networks.build_generator(attention=True)
    discriminator = networks.build_discriminator(attention=True)
    trainer = gan.GANTrainer(generator, discriminator)
    real = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1))
    monitor = {"generator": trainer.latent(4),
               "discriminator": real[:4].astype("float32")}
    # The training step is tested above; skipping it keeps this test fast.
    trainer.train_step = lambda batch: (0.0, 0.0)
    history = trainer.fit(real.astype("float32"), epochs=2, batch_size=4,
                          steps_per_epoch=1, monitor=monitor)
    for role, model in (("generator", generator),
                        ("discriminator", discriminator)):
        expected = attention_statistics(model, monitor[role])["attention"]
        for name in STATISTICS:
            logged = history[f"attention/{role}/attention/{name}"]
            assert logged == [pytest.approx(expected[name], rel=1e-5,
                                            abs=1e-7)] * 2


# The torch pass only: torch compiles nothing, so the run took 61 s there
# against 227 s on JAX (2 cores, shared, 2026-12-07), and it caught the
# lookup task failing to train on torch.
@pytest.mark.skipif(BACKEND != "torch", reason="runs in the torch pass")
def test_quick_demo_writes_valid_results(tmp_path):
    """`--quick` end to end in a fresh process on the torch backend."""
    image_module = pytest.importorskip("PIL.Image")
    backend = keras.backend.backend()
    source_root = pathlib.Path(conv_self_attention.__file__).parents[1]
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(source_root), os.environ.get("PYTHONPATH")])
        ),
    }
    output_dir = tmp_path / "out"
    command = [
        sys.executable, "-m", "conv_self_attention.demo", "--quick",
        "--backend", backend, "--output-dir", str(output_dir),
    ]
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True,
        timeout=900, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Demo results" in result.stdout
    assert str(output_dir) in result.stdout

    page = output_dir / "index.html"
    assert result.stdout.rstrip().endswith(str(page))
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["backend"] == backend
    accuracy = metrics["classifier"]["test_accuracy"]
    assert set(accuracy) == {"none", "first", "intermediate"}
    assert all(0.0 <= value["mean"] <= 1.0 for value in accuracy.values())
    distances = metrics["gan"]["frechet_distance"]
    assert all(np.isfinite(value["mean"]) and value["mean"] >= 0
               for key, value in distances.items()
               if key != "real_train_vs_held_out")
    assert "penultimate" in metrics["gan"]["frechet_features"]
    statistics = [
        *metrics["classifier"]["attention_statistics"].values(),
        *metrics["gan"]["attention_statistics"].values(),
    ]
    assert len(statistics) == 4
    statistics.append(metrics["lookup"]["attention_statistics"])
    for values in statistics:
        assert set(values) == {*STATISTICS, *BASELINES.values()}
        assert 0.0 <= values["entropy"]["mean"] <= 1.0
    ablation = metrics["classifier"]["ablation"]["intermediate"]
    assert ablation["output_change"]["mean"] >= 0.0
    assert "accuracy_change" in ablation
    lookup_arms = metrics["lookup"]["arms"]
    assert list(lookup_arms) == ["plain", "dilated", "global_context",
                                 "attention"]
    for arm in lookup_arms.values():
        assert len(arm["accuracy"]["values"]) == 1
        assert 0.0 <= arm["accuracy"]["mean"] <= 1.0
    seed_ablation, = lookup_arms["attention"]["ablation"]
    assert seed_ablation["seed"] == 0
    assert metrics["machine"] and metrics["date"]
    assert "mean_distance" in result.stdout
    assert "query_dependence" in result.stdout

    text = page.read_text()
    assert text.count("data:image/png;base64,") == 18
    assert "Lookup task" in text
    assert "Frechet distance" in text and "test accuracy" in text

    expected = [
        "classifier_curves.png", "gan_losses.png", "gan_gamma.png",
        "attention_statistics_gan.png", "attention_distance_generator.png",
        "attention_distance_discriminator.png",
        "attention_statistics_classifier_first.png",
        "attention_distance_classifier_intermediate.png",
        "attention_classifier_first.png",
        "attention_classifier_intermediate.png", "attention_generator.png",
        "attention_discriminator_real.png",
        "attention_discriminator_generated.png",
        "samples_gan_attention/epoch_001.png",
        "samples_gan_plain/epoch_001.png", "attention_lookup.png",
    ]
    for name in expected:
        with image_module.open(output_dir / name) as image:
            image.verify()
            assert image.format == "PNG"


@pytest.mark.once
def test_the_demo_page_shows_the_committed_digits_results():
    # docs/guide/demo.md's tables are those of the committed `--seeds 3`
    # run, made by the demo's own report code, and its prose names the
    # run as the file describes it.
    from conv_self_attention.demo import report

    root = pathlib.Path(__file__).parents[1]
    results = json.loads(
        (root / "docs" / "results" / "demo-seeds3.json").read_text()
    )
    page = (root / "docs" / "guide" / "demo.md").read_text()
    assert results["classifier"]["seeds"] == [0, 1, 2]
    assert results["gan"]["seeds"] == [0, 1, 2]
    for runs in results["classifier"]["test_accuracy"].values():
        assert runs["mean"] == pytest.approx(np.mean(runs["values"]))
    assert report.digits_markdown_tables(results) in page
    prose = " ".join(page.split())
    for quoted in (results["date"], f"{results['total_seconds']} s",
                   f"Keras {results['keras_version']}", "--seeds 3",
                   "2 CPU cores", "x86_64 Linux"):
        assert quoted in prose, quoted
    assert results["backend"] == "jax" and "JAX backend" in prose
    assert 'pip install ".[jax,demo]"' in prose


@pytest.mark.once
def test_the_attention_maps_page_quotes_the_figures_run():
    # docs/guide/attention-maps.md describes the committed figures; each
    # statistic it quotes is the figures' run's (docs/results), seed 0.
    root = pathlib.Path(__file__).parents[1]
    results = json.loads(
        (root / "docs" / "results" / "demo-figures.json").read_text()
    )
    page = " ".join(
        (root / "docs" / "guide" / "attention-maps.md").read_text().split()
    )
    assert results["seed"] == 0 and results["backend"] == "jax"
    assert results["date"] in page
    statistics = {
        "intermediate": results["classifier"]["attention_statistics"][
            "intermediate"],
        **results["gan"]["attention_statistics"],
    }
    quoted = {
        "intermediate": ("entropy", "query_dependence", "contribution",
                         "uniform_contribution", "mean_distance",
                         "uniform_mean_distance", "local_mass",
                         "uniform_local_mass"),
        "generator": ("entropy", "query_dependence", "contribution",
                      "mean_distance", "uniform_mean_distance",
                      "local_mass", "uniform_local_mass"),
        "discriminator": ("entropy", "query_dependence", "contribution"),
    }
    for layer, names in quoted.items():
        for name in names:
            value = statistics[layer][name]["values"][0]
            assert f"{value:.3f}" in page, (layer, name, value)
        keys = statistics[layer]["effective_keys"]["values"][0]
        if layer != "discriminator":
            assert f"{keys:.1f} effective keys" in page, (layer, keys)


@pytest.mark.once
def test_the_duration_quoted_is_a_full_run_of_the_defaults():
    # `make demo` runs the demo's defaults; the duration the README and
    # the demo page quote is the own count of the committed full run
    # (docs/results/demo-figures.json), made with the defaults of today.
    from conv_self_attention.demo import run

    root = pathlib.Path(__file__).parents[1]
    results = json.loads(
        (root / "docs" / "results" / "demo-figures.json").read_text()
    )
    defaults = run.Settings()
    assert not results["quick"] and results["task"] == "all"
    assert results["gan"]["epochs"] == defaults.gan_epochs
    assert len(results["gan"]["seeds"]) == defaults.gan_seeds
    assert results["classifier"]["epochs"] == defaults.classifier_epochs
    assert len(results["classifier"]["seeds"]) == defaults.classifier_seeds
    assert len(results["lookup"]["seeds"]) == defaults.lookup_seeds
    assert results["lookup"]["budget"]["epochs"] == (
        defaults.lookup_budget.epochs)
    for page in ("README.md", "docs/guide/demo.md"):
        text = " ".join((root / page).read_text().split())
        for quoted in (f"{results['total_seconds']:.0f} s", results["date"],
                       "JAX backend"):
            assert quoted in text, (page, quoted)
