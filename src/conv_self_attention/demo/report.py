"""The demo's results: `metrics.json`, the printed summary, `index.html`.

Every comparison is reported as mean and spread (sample standard
deviation) over the seeds it ran with, next to the difference of the means,
its standard error and its 95% Student's t interval, so that a difference
can be told from seed noise.
"""

import base64
import html
import math
import os

import keras
import numpy as np
import scipy.stats

from conv_self_attention.demo import classifier
from conv_self_attention.demo import gan
from conv_self_attention.diagnostics import STATISTICS
from conv_self_attention.diagnostics import key_coordinates
from conv_self_attention.diagnostics import pairwise_distances
from conv_self_attention.diagnostics import query_coordinates

FEATURES_NOTE = (
    "Frechet distance on the 64-d penultimate-layer ('features') "
    "activations of the demo's no-attention classifier, trained at the "
    "GAN's resolution; not Inception features, so compare within this demo."
)
ROLES = ("generator", "discriminator")


def spread(values):
    """`{"mean", "std", "values"}`; `std` (ddof=1) is `None` for one value."""
    values = [float(value) for value in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def final_statistics(runs, prefix):
    """`{statistic: spread}` of the last logged value of each run."""
    return {
        name: spread(run["history"][prefix + name][-1] for run in runs)
        for name in STATISTICS
    }


def uniform_mean_distance(layer):
    """Mean query-key distance of uniform attention on `layer`'s grid."""
    spatial = tuple(layer.input.shape[1:-1])
    queries = query_coordinates(spatial)
    keys = key_coordinates(spatial, layer.pool_size)
    return float(np.mean(pairwise_distances(queries, keys)))


def metrics(args, settings, dataset, classifiers, gans, reference, seconds):
    """The `metrics.json` content."""
    places = [place for place in classifiers if place != "none"]
    first_gan = gans[True][0]["trainer"]
    return {
        "backend": keras.backend.backend(),
        "dataset": dataset.describe(),
        "seed": args.seed,
        "quick": bool(args.quick),
        "classifier": {
            "epochs": settings.classifier_epochs,
            "seeds": [run["seed"] for run in classifiers["none"]],
            "test_accuracy": {
                place: spread(run["test_accuracy"] for run in runs)
                for place, runs in classifiers.items()
            },
            "attention_statistics": {
                place: final_statistics(
                    classifiers[place], "attention/attention/"
                )
                for place in places
            },
            "uniform_mean_distance": {
                place: uniform_mean_distance(
                    classifiers[place][0]["model"].get_layer("attention")
                )
                for place in places
            },
            "monitored_examples": classifier.MONITOR_EXAMPLES,
        },
        "gan": {
            "epochs": settings.gan_epochs,
            "steps": len(gans[True][0]["history"]["d_loss"]),
            "batch_size": settings.batch_size,
            "seeds": [run["seed"] for run in gans[True]],
            "learning_rates": {
                "generator": gan.GENERATOR_LEARNING_RATE,
                "discriminator": gan.DISCRIMINATOR_LEARNING_RATE,
            },
            "generated_samples": settings.generated_samples,
            "held_out_real_samples": len(dataset.x_test),
            "frechet_distance": {
                "with_attention": spread(
                    run["frechet_distance"] for run in gans[True]
                ),
                "without_attention": spread(
                    run["frechet_distance"] for run in gans[False]
                ),
                "real_train_vs_held_out": reference,
            },
            "frechet_features": FEATURES_NOTE,
            "attention_statistics": {
                role: final_statistics(
                    gans[True], f"attention/{role}/attention/"
                )
                for role in ROLES
            },
            "uniform_mean_distance": {
                role: uniform_mean_distance(
                    getattr(first_gan, role).get_layer("attention")
                )
                for role in ROLES
            },
        },
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
    }


def _mean_std(value, digits):
    if value["std"] is None:
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def difference_interval(value, baseline):
    """`(delta, standard error, half-width of the 95% interval)` of the
    difference of two means over seeds, or `None` for the last two when a
    side has one seed.

    The interval is Student's t with `min(n1, n2) - 1` degrees of freedom
    (the conservative choice for unequal variances): with 3 seeds a side,
    4.30 standard errors, not 2.
    """
    delta = value["mean"] - baseline["mean"]
    if value["std"] is None or baseline["std"] is None:
        return delta, None, None
    counts = len(value["values"]), len(baseline["values"])
    error = math.sqrt(value["std"] ** 2 / counts[0]
                      + baseline["std"] ** 2 / counts[1])
    quantile = scipy.stats.t.ppf(0.975, min(counts) - 1)
    return delta, error, float(quantile * error)


def _difference(value, baseline, digits):
    """Difference of means with its s.e. and 95% interval (if both have
    spread)."""
    delta, error, half_width = difference_interval(value, baseline)
    if error is None:
        return f"{delta:+.{digits}f}"
    return (f"{delta:+.{digits}f} (s.e. {error:.{digits}f}; 95%: "
            f"{delta - half_width:+.{digits}f} to "
            f"{delta + half_width:+.{digits}f})")


def result_tables(metrics):
    """`[(title, header, rows)]`: the tables of the summary and the page."""
    accuracy = metrics["classifier"]["test_accuracy"]
    seeds = metrics["classifier"]["seeds"]
    rows = [
        [description, _mean_std(accuracy[place], 4),
         "" if place == "none"
         else _difference(accuracy[place], accuracy["none"], 4)]
        for place, description in classifier.DESCRIPTIONS.items()
    ]
    tables = [(
        f"Classifiers ({metrics['classifier']['epochs']} epochs, "
        f"{len(seeds)} seed(s) {seeds}): held-out accuracy, mean ± s.d.",
        ["model", "test accuracy", "vs no attention"], rows,
    )]
    gan_info = metrics["gan"]
    distances = gan_info["frechet_distance"]
    tables.append((
        f"SAGAN ({gan_info['epochs']} epochs, {gan_info['steps']} steps, "
        f"{len(gan_info['seeds'])} seed(s) {gan_info['seeds']}): Frechet "
        "distance, lower is better, mean ± s.d.",
        ["model", "Frechet distance", "vs no attention"],
        [["with attention", _mean_std(distances["with_attention"], 2),
          _difference(distances["with_attention"],
                      distances["without_attention"], 2)],
         ["without attention", _mean_std(distances["without_attention"], 2),
          ""],
         ["real train vs held-out (floor)",
          f"{distances['real_train_vs_held_out']:.2f}", ""]],
    ))
    tables.append((
        "Attention statistics at the end of training, mean ± s.d. over "
        "seeds (distance in input cells; uniform attention in brackets)",
        ["layer", *STATISTICS], _statistics_rows(metrics),
    ))
    return tables


def _statistics_rows(metrics):
    groups = [
        (f"classifier, {classifier.DESCRIPTIONS[place]}", values,
         metrics["classifier"]["uniform_mean_distance"][place])
        for place, values in
        metrics["classifier"]["attention_statistics"].items()
    ] + [
        (f"SAGAN {role}", values,
         metrics["gan"]["uniform_mean_distance"][role])
        for role, values in metrics["gan"]["attention_statistics"].items()
    ]
    rows = []
    for label, values, uniform in groups:
        cells = [_mean_std(values[name], 3) for name in STATISTICS]
        cells[STATISTICS.index("mean_distance")] += f" [{uniform:.2f}]"
        rows.append([label, *cells])
    return rows


def _text_table(title, header, rows):
    widths = [max(len(str(row[i])) for row in [header, *rows])
              for i in range(len(header))]
    lines = [title]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(
            str(cell).ljust(width) for cell, width in zip(
                row, widths, strict=True)
        ))
    return lines


def summary(metrics, output_dir, files):
    """The printed result tables, as one string."""
    lines = [
        "",
        "=" * 72,
        f"Demo results ({metrics['backend']}, {metrics['dataset']}, "
        f"{metrics['seconds']['total'] / 60:.1f} min)",
    ]
    for table in result_tables(metrics):
        lines += ["", *_text_table(*table)]
    lines += [
        "  " + FEATURES_NOTE,
        "  A difference of two means whose 95% interval (Student's t, "
        "min(seeds) - 1 degrees of freedom) contains 0 is within seed "
        "noise.",
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


def write_html(metrics, text, files, output_dir):
    """Writes `index.html`: the tables and the figures, images embedded.

    Of the per-epoch sample grids only each GAN's last is shown.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>conv-self-attention demo</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:auto}",
        "table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}",
        "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
        f"<h1>Demo results ({html.escape(metrics['backend'])}, "
        f"{html.escape(metrics['dataset'])})</h1>",
    ]
    for title, header, rows in result_tables(metrics):
        parts.append(f"<h3>{html.escape(title)}</h3><table><tr>")
        parts += [f"<th>{html.escape(cell)}</th>" for cell in header]
        parts.append("</tr>")
        for row in rows:
            cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    parts.append(f"<p>{html.escape(FEATURES_NOTE)}</p>")
    for path in _page_figures(files):
        with open(path, "rb") as file:
            encoded = base64.b64encode(file.read()).decode("ascii")
        name = html.escape(os.path.relpath(path, output_dir))
        parts.append(f"<h3>{name}</h3>"
                     f"<img alt='{name}' src='data:image/png;base64,"
                     f"{encoded}'>")
    parts.append(f"<h3>Printed summary</h3><pre>{html.escape(text)}</pre>")
    parts.append("</body></html>")
    path = os.path.join(output_dir, "index.html")
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(parts))
    return path


def _page_figures(files):
    last_grids = {}
    shown = []
    for path in files:
        if not path.endswith(".png"):
            continue
        folder = os.path.dirname(path)
        if os.path.basename(folder).startswith("samples_"):
            last_grids[folder] = max(last_grids.get(folder, path), path)
        else:
            shown.append(path)
    return shown + sorted(last_grids.values())
