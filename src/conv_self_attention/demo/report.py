"""The demo's results: `metrics.json`, the printed summary, `index.html`.

Every comparison is reported as mean and spread over the seeds it ran with,
next to the difference of the means and its 95% Student's t interval
(`intervals`), so that a difference can be told from seed noise.
"""

import base64
import html
import os

import keras

from conv_self_attention.demo import classifier
from conv_self_attention.demo import gan
from conv_self_attention.demo import lookup_report
from conv_self_attention.demo.intervals import difference
from conv_self_attention.demo.intervals import mean_std
from conv_self_attention.demo.intervals import spread
from conv_self_attention.diagnostics import BASELINES
from conv_self_attention.diagnostics import STATISTICS

FEATURES_NOTE = (
    "Frechet distance on the 64-d penultimate-layer ('features') "
    "activations of the demo's no-attention classifier, trained at the "
    "GAN's resolution; not Inception features, so compare within this demo."
)
ROLES = ("generator", "discriminator")


def final_statistics(runs, prefix):
    """`{statistic: spread}` of the last logged value of each run, the
    uniform-attention baselines included."""
    return {
        name: spread(run["history"][prefix + name][-1] for run in runs)
        for name in (*STATISTICS, *BASELINES.values())
    }


def ablation_spread(ablations):
    """`{"output_change": spread, "<metric>_change": spread, ...}` of
    `attention_ablation` results of one layer over seeds."""
    ablations = list(ablations)
    result = {"output_change": spread(a["output_change"] for a in ablations)}
    for name in ablations[0]["change"]:
        result[f"{name}_change"] = spread(a["change"][name]
                                          for a in ablations)
    return result


def metrics(args, settings, dataset, classifiers, gans, reference, seconds):
    """The `metrics.json` content."""
    places = [place for place in classifiers if place != "none"]
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
            "ablation": {
                place: ablation_spread(run["ablation"]
                                       for run in classifiers[place])
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
            "ablation": {
                role: ablation_spread(run["ablation"][role]
                                      for run in gans[True])
                for role in ROLES
            },
        },
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
    }


def result_tables(metrics):
    """`[(title, header, rows)]`: the tables of the summary and the page."""
    tables = []
    if "classifier" in metrics:
        tables += _digits_tables(metrics)
    if "lookup" in metrics:
        tables += lookup_report.lookup_tables(metrics["lookup"])
    groups = _statistics_groups(metrics)
    tables.append((
        "Attention statistics at the end of training, mean ± s.d. over "
        "seeds (distance in input cells; uniform attention in brackets)",
        ["layer", *STATISTICS], [
            [label, *statistics_cells(values)] for label, values in groups
        ],
    ))
    return tables


def digits_markdown_tables(metrics):
    """The digits' tables of `result_tables` (classifiers, SAGAN,
    ablation, the statistics of their layers) as Markdown, for the docs."""
    digits = {key: value for key, value in metrics.items()
              if key != "lookup"}
    return lookup_report.as_markdown(result_tables(digits))


def _digits_tables(metrics):
    accuracy = metrics["classifier"]["test_accuracy"]
    seeds = metrics["classifier"]["seeds"]
    rows = [
        [description, mean_std(accuracy[place], 4),
         "" if place == "none"
         else difference(accuracy[place], accuracy["none"], 4)]
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
        [["with attention", mean_std(distances["with_attention"], 2),
          difference(distances["with_attention"],
                      distances["without_attention"], 2)],
         ["without attention", mean_std(distances["without_attention"], 2),
          ""],
         ["real train vs held-out (floor)",
          f"{distances['real_train_vs_held_out']:.2f}", ""]],
    ))
    rows = [[f"classifier, {classifier.DESCRIPTIONS[place]}",
             mean_std(values["output_change"], 3),
             mean_std(values["accuracy_change"], 4)]
            for place, values in metrics["classifier"]["ablation"].items()]
    rows += [[f"SAGAN {role}", mean_std(values["output_change"], 3), ""]
             for role, values in gan_info["ablation"].items()]
    tables.append((
        "Ablation: each trained layer's gamma set to 0 (held-out digits; "
        "generator on fixed latents), mean ± s.d. over seeds",
        ["layer", "output change", "accuracy change"], rows,
    ))
    return tables


def _statistics_groups(metrics):
    groups = []
    if "classifier" in metrics:
        groups += [(f"classifier, {classifier.DESCRIPTIONS[place]}", values)
                   for place, values in
                   metrics["classifier"]["attention_statistics"].items()]
        groups += [(f"SAGAN {role}", values) for role, values in
                   metrics["gan"]["attention_statistics"].items()]
    if "lookup" in metrics:
        groups.append(("lookup task, SelfAttention2D",
                       metrics["lookup"]["attention_statistics"]))
    return groups


def statistics_cells(values):
    """`mean ± s.d.` of each statistic, its uniform baseline in brackets."""
    cells = []
    for name in STATISTICS:
        cell = mean_std(values[name], 3)
        if name in BASELINES:
            cell += f" [{values[BASELINES[name]]['mean']:.3f}]"
        cells.append(cell)
    return cells


def _describe(metrics):
    parts = [metrics["backend"], metrics["machine"], metrics["date"]]
    if "dataset" in metrics:
        parts.insert(1, metrics["dataset"])
    return ", ".join(parts)


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
        f"Demo results ({_describe(metrics)}, "
        f"{metrics['total_seconds'] / 60:.1f} min)",
    ]
    for table in result_tables(metrics):
        lines += ["", *_text_table(*table)]
    if "gan" in metrics:
        lines.append("  " + FEATURES_NOTE)
    lines += [
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
        f"<h1>Demo results ({html.escape(_describe(metrics))})</h1>",
    ]
    for title, header, rows in result_tables(metrics):
        parts.append(f"<h3>{html.escape(title)}</h3><table><tr>")
        parts += [f"<th>{html.escape(cell)}</th>" for cell in header]
        parts.append("</tr>")
        for row in rows:
            cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    if "gan" in metrics:
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
