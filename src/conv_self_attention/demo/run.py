"""Runs the whole demo: classifiers, GANs, Fréchet distances, figures.

Imported only after `cli` has fixed the Keras backend.
"""

import dataclasses
import datetime
import json
import os
import platform
import time

import keras

from conv_self_attention.demo import classifier
from conv_self_attention.demo import data
from conv_self_attention.demo import figures
from conv_self_attention.demo import frechet
from conv_self_attention.demo import gan
from conv_self_attention.demo import lookup
from conv_self_attention.demo import lookup_run
from conv_self_attention.demo import networks
from conv_self_attention.demo import report
from conv_self_attention.demo.classifier import MONITOR_EXAMPLES
from conv_self_attention.diagnostics import attention_ablation
from conv_self_attention.visualize import attention_scores_model


@dataclasses.dataclass
class Settings:
    """The budget of one run; `--quick` shrinks every part of it."""

    classifier_epochs: int = 15
    gan_epochs: int = 40
    gan_steps_per_epoch: int = None  # None: one pass over the data.
    generated_samples: int = 1000
    batch_size: int = 64
    classifier_seeds: int = 3
    gan_seeds: int = 1
    lookup_seeds: int = 2
    lookup_budget: lookup.Budget = dataclasses.field(
        default_factory=lookup.Budget)

    @classmethod
    def from_args(cls, args):
        settings = cls()
        if args.quick:
            settings = cls(classifier_epochs=1, gan_epochs=1,
                           gan_steps_per_epoch=6, generated_samples=200,
                           classifier_seeds=1, lookup_seeds=1,
                           lookup_budget=lookup.Budget(
                               train_examples=512, held_out_examples=250,
                               epochs=1))
        if args.lookup_seeds:
            settings.lookup_seeds = args.lookup_seeds
        if args.lookup_epochs:
            settings.lookup_budget.epochs = args.lookup_epochs
        if args.classifier_seeds:
            settings.classifier_seeds = args.classifier_seeds
        settings.gan_seeds = args.seeds
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
    metrics, files = {}, []
    if args.task in ("all", "digits"):
        metrics, files = _run_digits(args, settings, output_dir)
    if args.task in ("all", "lookup"):
        seeds = _seeds(args.lookup_first_seed, settings.lookup_seeds)
        metrics["lookup"], lookup_files = lookup_run.run_lookup(
            settings.lookup_budget, seeds, output_dir, args.query_key_init)
        files += lookup_files
    metrics.update(_run_description(args, started))
    files.append(_write_json(metrics, output_dir))
    text = report.summary(metrics, output_dir, files)
    page = report.write_html(metrics, text, files, output_dir)
    print(text)
    print(f"Report page: {page}")
    return metrics


def _run_description(args, started):
    """Where, when and how the run ran: the context of its numbers."""
    return {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "task": args.task,
        "quick": bool(args.quick),
        "query_key_init": args.query_key_init or "layer default",
        "machine": (f"{platform.machine()} {platform.system()}, "
                    f"{os.cpu_count()} CPU cores visible"),
        "date": datetime.date.today().isoformat(),
        "total_seconds": round(time.time() - started, 1),
    }


def _run_digits(args, settings, output_dir):
    """The classifiers and GANs: `(metrics, files)`."""
    started = time.time()
    dataset = data.load_dataset(args.dataset, seed=args.seed)
    print(f"Dataset: {dataset.describe()}")
    seconds, files = {}, []

    tick = time.time()
    classifiers = classifier.train_all(
        dataset, settings.classifier_epochs,
        _seeds(args.seed, settings.classifier_seeds), args.query_key_init,
    )
    seconds["classifiers"] = time.time() - tick
    files += _classifier_figures(classifiers, dataset, output_dir)

    # The first seed's no-attention classifier, at the GAN's resolution,
    # gives the features of every Frechet distance.
    features = frechet.feature_extractor(classifiers["none"][0]["model"])
    real_features = features.predict(dataset.x_test, verbose=0)
    gans = {True: [], False: []}
    for seed in _seeds(args.seed, settings.gan_seeds):
        for attention in (True, False):
            tick = time.time()
            result = _train_gan(attention, dataset, settings, seed,
                                output_dir, samples=seed == args.seed,
                                query_key_init=args.query_key_init)
            key = _gan_key(attention)
            seconds[key] = seconds.get(key, 0.0) + time.time() - tick
            result["frechet_distance"] = _generated_distance(
                result["trainer"], features, real_features, settings
            )
            files += result["files"]
            gans[attention].append(result)
    files += _gan_figures(gans, dataset, output_dir)
    reference = frechet.frechet_distance(
        features.predict(dataset.x_train, verbose=0), real_features
    )
    seconds["total"] = time.time() - started
    metrics = report.metrics(args, settings, dataset, classifiers, gans,
                             reference, seconds)
    return metrics, files


def _seeds(first, count):
    return [first + offset for offset in range(count)]


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


def _train_gan(attention, dataset, settings, seed, output_dir, samples,
               query_key_init=None):
    """Trains one GAN; with `samples`, saves its sample grid every epoch."""
    label = "with attention" if attention else "without attention"
    print(f"\nSAGAN {label}, seed {seed}")
    keras.utils.set_random_seed(seed)
    generator = networks.build_generator(attention, dataset.resolution,
                                         query_key_init)
    discriminator = networks.build_discriminator(
        attention, dataset.resolution, query_key_init)
    trainer = gan.GANTrainer(generator, discriminator, seed=seed)
    fixed_latent = trainer.latent(64)
    sample_dir = os.path.join(output_dir, f"samples_{_gan_key(attention)}")
    files = []

    def save_samples(epoch):
        os.makedirs(sample_dir, exist_ok=True)
        images = generator.predict(fixed_latent, verbose=0)
        path = os.path.join(sample_dir, f"epoch_{epoch + 1:03d}.png")
        title = f"SAGAN {label}: samples after epoch {epoch + 1}"
        files.append(figures.sample_grid(images, path, title))

    monitor = None
    if attention:
        monitor = {"generator": fixed_latent,
                   "discriminator": dataset.x_test[:MONITOR_EXAMPLES]}
    history = trainer.fit(
        dataset.x_train,
        settings.gan_epochs,
        batch_size=settings.batch_size,
        steps_per_epoch=settings.gan_steps_per_epoch,
        on_epoch_end=save_samples if samples else None,
        monitor=monitor,
    )
    ablation = None
    if attention:
        # No targets: how much each network's outputs depend on its layer.
        ablation = {
            "generator": attention_ablation(
                generator, fixed_latent)["attention"],
            "discriminator": attention_ablation(
                discriminator, dataset.x_test)["attention"],
        }
    return {"trainer": trainer, "history": history, "label": label,
            "files": files, "seed": seed, "ablation": ablation}


def _gan_key(attention):
    return "gan_attention" if attention else "gan_plain"


def _classifier_figures(classifiers, dataset, output_dir):
    path = os.path.join(output_dir, "classifier_curves.png")
    files = [figures.classifier_curves(
        classifiers, classifier.DESCRIPTIONS, path
    )]
    image = dataset.x_test[:1]
    monitored = dataset.x_test[:MONITOR_EXAMPLES]
    for place in ("first", "intermediate"):
        run = classifiers[place][0]
        model = run["model"]
        description = classifier.DESCRIPTIONS[place]
        files.append(figures.statistics_figure(
            run["monitor"], os.path.join(
                output_dir, f"attention_statistics_classifier_{place}.png"),
            f"Classifier, {description}, seed {run['seed']}: attention "
            "statistics before training and per epoch",
        ))
        files.append(figures.distance_figure(
            model, monitored,
            os.path.join(output_dir,
                         f"attention_distance_classifier_{place}.png"),
            f"Classifier, {description}: attention distance on "
            f"{len(monitored)} held-out digits",
        ))
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
    """Figures of the first seed's GANs."""
    first = {attention: runs[0] for attention, runs in gans.items()}
    histories = {run["label"]: run["history"] for run in first.values()}
    files = [figures.gan_losses(
        histories, os.path.join(output_dir, "gan_losses.png")
    )]
    run = first[True]
    gammas = {
        key.removeprefix("gamma/"): values
        for key, values in run["history"].items() if key.startswith("gamma/")
    }
    files.append(figures.gamma_curves(
        gammas, os.path.join(output_dir, "gan_gamma.png"),
        f"SAGAN with attention, seed {run['seed']}: gamma per epoch",
    ))
    files.append(figures.statistics_figure(
        run["history"],
        os.path.join(output_dir, "attention_statistics_gan.png"),
        f"SAGAN with attention, seed {run['seed']}: attention statistics "
        "per epoch (generator on fixed latents, discriminator on held-out "
        "digits)",
    ))
    trainer = run["trainer"]
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
    monitored = (
        (trainer.generator, trainer.latent(MONITOR_EXAMPLES), "generator"),
        (trainer.discriminator, dataset.x_test[:MONITOR_EXAMPLES],
         "discriminator"),
    )
    for model, inputs, name in monitored:
        files.append(figures.distance_figure(
            model, inputs,
            os.path.join(output_dir, f"attention_distance_{name}.png"),
            f"SAGAN {name}: attention distance on {MONITOR_EXAMPLES} "
            "inputs",
        ))
    return files


def _input_grid(layer):
    return tuple(layer.input.shape[1:3])
