"""Runs the lookup task: every arm on every seed, its metrics and figures.

Imported only after `cli` has fixed the Keras backend.
"""

import os
import time

from scipy import ndimage

from conv_self_attention.demo import figures
from conv_self_attention.demo import lookup
from conv_self_attention.demo import lookup_data
from conv_self_attention.demo.intervals import difference_interval
from conv_self_attention.demo.intervals import spread
from conv_self_attention.diagnostics import BASELINES
from conv_self_attention.diagnostics import STATISTICS
from conv_self_attention.diagnostics import attention_statistics
from conv_self_attention.visualize import attention_scores_model

# Held-out maps on which the trained layer's statistics are measured.
STATISTICS_EXAMPLES = 64


def run_lookup(settings, seeds, output_dir, query_key_init=None):
    """Trains the four arms on each seed; returns `(metrics, files)`."""
    started = time.time()
    runs = {arm: [] for arm in lookup.ARMS}
    for seed in seeds:
        for number, arm in enumerate(lookup.ARMS, start=1):
            print(f"\nLookup task, arm {number}/{len(lookup.ARMS)} "
                  f"({lookup.DESCRIPTIONS[arm]}), seed {seed}", flush=True)
            result = lookup.train_arm(arm, seed, settings, query_key_init,
                                      verbose=2)
            print(f"held-out blob-pixel accuracy {result['accuracy']:.4f}")
            runs[arm].append(result)
    statistics = [_statistics(run) for run in runs["attention"]]
    metrics = lookup_metrics(runs, settings, statistics, query_key_init)
    files = _figures(runs["attention"][0], output_dir)
    metrics["seconds"] = round(time.time() - started, 1)
    return metrics, files


def lookup_metrics(runs, settings, statistics, query_key_init):
    """The `lookup` part of `metrics.json`."""
    attention = spread(run["accuracy"] for run in runs["attention"])
    arms = {}
    for arm, arm_runs in runs.items():
        accuracy = spread(run["accuracy"] for run in arm_runs)
        entry = {"description": lookup.DESCRIPTIONS[arm],
                 "parameters": arm_runs[0]["parameters"],
                 "accuracy": accuracy}
        if arm != "attention":
            delta, error, half = difference_interval(attention, accuracy)
            entry["attention_minus_this"] = {
                "delta": delta, "standard_error": error,
                "half_width_95": half}
        arms[arm] = entry
    arms["attention"]["ablation"] = [
        {"seed": run["seed"],
         "accuracy": run["ablation"]["intact"]["accuracy"],
         "accuracy_without_layer": run["ablation"]["ablated"]["accuracy"],
         "output_change": run["ablation"]["output_change"]}
        for run in runs["attention"]]
    names = [*STATISTICS, *BASELINES.values()]
    return {
        "task": ("blob-pixel accuracy on held-out maps: the shape of the "
                 "key of the blob's colour (chance about 1/3)"),
        "map_size": lookup_data.SIZE,
        "seeds": [run["seed"] for run in runs["attention"]],
        "budget": {
            "train_examples": settings.train_examples,
            "held_out_examples": settings.held_out_examples,
            "epochs": settings.epochs, "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "schedule": "Adam, cosine decay to 0",
        },
        "query_key_init": query_key_init or "layer default",
        "arms": arms,
        "attention_statistics": {
            name: spread(values[name] for values in statistics)
            for name in names},
        "statistics_examples": STATISTICS_EXAMPLES,
    }


def _statistics(run):
    held_out = lookup_data.make_lookup(STATISTICS_EXAMPLES,
                                       run["seed"] + 10**6)
    return attention_statistics(run["model"], held_out.x)["attention"]


def _figures(run, output_dir):
    """Attention maps of blob pixels over a held-out map, first seed."""
    held_out = lookup_data.make_lookup(1, run["seed"] + 10**6)
    model = run["model"]
    layer = model.get_layer("attention")
    scores = attention_scores_model(model, layer).predict(held_out.x,
                                                          verbose=0)
    # The centre pixel of each blob.
    labels, count = ndimage.label(held_out.blobs[0])
    queries = [tuple(int(round(c)) for c in centre) for centre in
               ndimage.center_of_mass(labels > 0, labels,
                                      range(1, count + 1))]
    path = os.path.join(output_dir, "attention_lookup.png")
    title = (f"Lookup task, seed {run['seed']}: where blob pixels attend "
             "(a held-out map)")
    figure = figures.visualize.plot_attention_maps(
        held_out.x[0], scores, queries, (lookup_data.SIZE,) * 2,
        layer=layer, title=title)
    return [figures.save(figure, path)]
