"""Runs the whole demo: classifiers, GANs, Fréchet distances, figures.

Imported only after `cli` has fixed the Keras backend.
"""

import dataclasses
import json
import os
import time

import keras

from conv_self_attention.demo import classifier
from conv_self_attention.demo import data
from conv_self_attention.demo import figures
from conv_self_attention.demo import frechet
from conv_self_attention.demo import gan
from conv_self_attention.demo import networks
from conv_self_attention.visualize import attention_scores_model

FEATURES_NOTE = (
    "Frechet distance on the 64-d penultimate-layer ('features') "
    "activations of the demo's no-attention classifier, trained at the "
    "GAN's resolution; not Inception features, so compare within this demo."
)


@dataclasses.dataclass
class Settings:
    """The budget of one run; `--quick` shrinks every part of it."""

    classifier_epochs: int = 15
    gan_epochs: int = 80
    gan_steps_per_epoch: int = None  # None: one pass over the data.
    generated_samples: int = 1000
    batch_size: int = 64

    @classmethod
    def from_args(cls, args):
        settings = cls()
        if args.quick:
            settings = cls(classifier_epochs=1, gan_epochs=1,
                           gan_steps_per_epoch=6, generated_samples=200)
        if args.classifier_epochs:
            settings.classifier_epochs = args.classifier_epochs
        if args.epochs:
            settings.gan_epochs = args.epochs
        return settings


def run(args):
    """Runs the demo for parsed command-line `args`; returns the metrics."""
    started = time.time()
    settings = Settings.from_args(args)
    output_dir = os.path.abspath(args.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}; "
          f"writing to {output_dir}")
    dataset = data.load_dataset(args.dataset, seed=args.seed)
    print(f"Dataset: {dataset.describe()}")
    seconds, files = {}, []

    tick = time.time()
    classifiers = classifier.train_all(
        dataset, settings.classifier_epochs, args.seed
    )
    seconds["classifiers"] = time.time() - tick
    files += _classifier_figures(classifiers, dataset, output_dir)

    # The no-attention classifier, at the GAN's resolution, gives the
    # features of every Frechet distance.
    features = frechet.feature_extractor(classifiers["none"]["model"])
    real_features = features.predict(dataset.x_test, verbose=0)
    gans = {}
    for attention in (True, False):
        tick = time.time()
        gans[attention] = _train_gan(
            attention, dataset, settings, args.seed, output_dir
        )
        seconds[_gan_key(attention)] = time.time() - tick
        gans[attention]["frechet_distance"] = _generated_distance(
            gans[attention]["trainer"], features, real_features, settings
        )
        files += gans[attention]["files"]
    files += _gan_figures(gans, dataset, output_dir)
    reference = frechet.frechet_distance(
        features.predict(dataset.x_train, verbose=0), real_features
    )
    seconds["total"] = time.time() - started
    metrics = _metrics(args, settings, dataset, classifiers, gans, reference,
                       seconds)
    files.append(_write_json(metrics, output_dir))
    print(summary(metrics, output_dir, files))
    return metrics


def _generated_distance(trainer, features, real_features, settings):
    generated = trainer.generate(settings.generated_samples)
    return frechet.frechet_distance(
        features.predict(generated, verbose=0), real_features
    )


def _write_json(metrics, output_dir):
    path = os.path.join(output_dir, "metrics.json")
    with open(path, "w") as file:
        json.dump(metrics, file, indent=2)
    return path


def _train_gan(attention, dataset, settings, seed, output_dir):
    label = "with attention" if attention else "without attention"
    print(f"\nSAGAN {label}")
    keras.utils.set_random_seed(seed)
    generator = networks.build_generator(attention, dataset.resolution)
    discriminator = networks.build_discriminator(attention, dataset.resolution)
    trainer = gan.GANTrainer(generator, discriminator, seed=seed)
    fixed_latent = trainer.latent(64)
    sample_dir = os.path.join(output_dir, f"samples_{_gan_key(attention)}")
    os.makedirs(sample_dir, exist_ok=True)
    files = []

    def save_samples(epoch):
        images = generator.predict(fixed_latent, verbose=0)
        path = os.path.join(sample_dir, f"epoch_{epoch + 1:03d}.png")
        title = f"SAGAN {label}: samples after epoch {epoch + 1}"
        files.append(figures.sample_grid(images, path, title))

    history = trainer.fit(
        dataset.x_train,
        settings.gan_epochs,
        batch_size=settings.batch_size,
        steps_per_epoch=settings.gan_steps_per_epoch,
        on_epoch_end=save_samples,
    )
    return {"trainer": trainer, "history": history, "label": label,
            "files": files}


def _gan_key(attention):
    return "gan_attention" if attention else "gan_plain"


def _classifier_figures(classifiers, dataset, output_dir):
    path = os.path.join(output_dir, "classifier_curves.png")
    files = [figures.classifier_curves(
        classifiers, classifier.DESCRIPTIONS, path
    )]
    image = dataset.x_test[:1]
    for place in ("first", "intermediate"):
        model = classifiers[place]["model"]
        layer = model.get_layer("attention")
        scores = attention_scores_model(model, layer).predict(image, verbose=0)
        path = os.path.join(output_dir, f"attention_classifier_{place}.png")
        title = (f"Classifier, {classifier.DESCRIPTIONS[place]}: "
                 f"a held-out digit (label {dataset.y_test[0]})")
        files.append(figures.attention_figure(
            image[0], scores, layer, _input_grid(layer), path, title
        ))
    return files


def _gan_figures(gans, dataset, output_dir):
    histories = {gans[a]["label"]: gans[a]["history"] for a in gans}
    files = [figures.gan_losses(
        histories, os.path.join(output_dir, "gan_losses.png")
    )]
    gammas = {
        key.removeprefix("gamma/"): values
        for key, values in gans[True]["history"].items()
        if key.startswith("gamma/")
    }
    files.append(figures.gamma_curves(
        gammas, os.path.join(output_dir, "gan_gamma.png"),
        "SAGAN with attention: gamma per epoch",
    ))
    trainer = gans[True]["trainer"]
    latent = trainer.latent(1)
    generated = trainer.generator.predict(latent, verbose=0)
    real = dataset.x_test[:1]
    # (model, its inputs, the image to draw on, file name, title)
    cases = (
        (trainer.generator, latent, generated, "generator",
         "Generator attention while drawing a generated digit"),
        (trainer.discriminator, real, real, "discriminator_real",
         "Discriminator attention on a held-out digit"),
        (trainer.discriminator, generated, generated,
         "discriminator_generated",
         "Discriminator attention on a generated digit"),
    )
    for model, inputs, image, name, title in cases:
        layer = model.get_layer("attention")
        scores = attention_scores_model(model, layer).predict(inputs, verbose=0)
        path = os.path.join(output_dir, f"attention_{name}.png")
        files.append(figures.attention_figure(
            image[0], scores, layer, _input_grid(layer), path, title
        ))
    return files


def _input_grid(layer):
    return tuple(layer.input.shape[1:3])


def _metrics(args, settings, dataset, classifiers, gans, reference, seconds):
    history = gans[True]["history"]
    return {
        "backend": keras.backend.backend(),
        "dataset": dataset.describe(),
        "seed": args.seed,
        "quick": bool(args.quick),
        "classifier": {
            "epochs": settings.classifier_epochs,
            "test_accuracy": {
                place: result["test_accuracy"]
                for place, result in classifiers.items()
            },
            "final_gamma": {
                place: _last_gammas(result["history"])
                for place, result in classifiers.items() if place != "none"
            },
        },
        "gan": {
            "epochs": settings.gan_epochs,
            "steps": len(history["d_loss"]),
            "batch_size": settings.batch_size,
            "learning_rates": {
                "generator": gan.GENERATOR_LEARNING_RATE,
                "discriminator": gan.DISCRIMINATOR_LEARNING_RATE,
            },
            "generated_samples": settings.generated_samples,
            "held_out_real_samples": len(dataset.x_test),
            "frechet_distance": {
                "with_attention": gans[True]["frechet_distance"],
                "without_attention": gans[False]["frechet_distance"],
                "real_train_vs_held_out": reference,
            },
            "frechet_features": FEATURES_NOTE,
            "final_gamma": _last_gammas(history),
        },
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
    }


def _last_gammas(history):
    return {
        key.removeprefix("gamma/"): float(values[-1])
        for key, values in history.items() if key.startswith("gamma/")
    }


def summary(metrics, output_dir, files):
    """The printed result table, as one string."""
    accuracy = metrics["classifier"]["test_accuracy"]
    gammas = metrics["classifier"]["final_gamma"]
    distances = metrics["gan"]["frechet_distance"]
    lines = [
        "",
        "=" * 72,
        f"Demo results ({metrics['backend']}, {metrics['dataset']}, "
        f"{metrics['seconds']['total'] / 60:.1f} min)",
        "",
        f"Classifiers ({metrics['classifier']['epochs']} epochs each, "
        f"seed {metrics['seed']}):",
        f"  {'model':<32}{'test accuracy':>14}{'final gamma':>14}",
    ]
    for place, description in classifier.DESCRIPTIONS.items():
        gamma = gammas.get(place, {})
        gamma_text = ", ".join(f"{v:.3f}" for v in gamma.values()) or "-"
        lines.append(
            f"  {description:<32}{accuracy[place]:>14.4f}{gamma_text:>14}"
        )
    gan_info = metrics["gan"]
    lines += [
        "",
        f"SAGAN ({gan_info['epochs']} epochs, {gan_info['steps']} steps, "
        "hinge loss, spectral norm, TTUR lr G 1e-4 / D 4e-4):",
        f"  {'model':<32}{'Frechet distance':>18}",
        f"  {'with attention':<32}{distances['with_attention']:>18.2f}",
        f"  {'without attention':<32}{distances['without_attention']:>18.2f}",
        f"  {'real train vs held-out (floor)':<32}"
        f"{distances['real_train_vs_held_out']:>18.2f}",
        f"  ({gan_info['generated_samples']} generated vs "
        f"{gan_info['held_out_real_samples']} held-out real digits; lower "
        "is better)",
        "  " + FEATURES_NOTE,
        "  final gamma: " + ", ".join(
            f"{k} {v:.3f}" for k, v in gan_info["final_gamma"].items()
        ),
        "",
        f"{len(files)} files written under {output_dir}:",
    ]
    lines += [f"  {os.path.relpath(path, output_dir)}"
              for path in _summarized(files)]
    lines.append("=" * 72)
    return "\n".join(lines)


def _summarized(files):
    """Lists files, collapsing the per-epoch sample grids to one line each."""
    shown, folders = [], {}
    for path in files:
        folder = os.path.basename(os.path.dirname(path))
        if folder.startswith("samples_"):
            folders.setdefault(os.path.dirname(path), []).append(path)
        else:
            shown.append(path)
    for folder, paths in folders.items():
        shown.append(os.path.join(
            folder, f"epoch_*.png ({len(paths)} sample grids)"
        ))
    return sorted(shown)
