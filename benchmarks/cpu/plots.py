"""Draws the Benchmarks page's plots from `benchmarks/results/*.json`.

    python benchmarks/cpu/plots.py            # or: make bench-plots

One figure per mode (forward, forward+backward): a column per backend, time
(top) and memory (bottom) against the map size, for our layer (`auto`), the
naive SAGAN block and `keras.layers.MultiHeadAttention`. Each column names
the machine, the date and the package release of its results, since the
backends' results may come from different runs. Memory is the increase of
the process's RSS over its value before the measured step where the results
hold that value (`rss_before_step_bytes`), else the process's peak RSS, and
the axis says which. Cases that were skipped or failed are left out.
"""

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
OUTPUT = HERE.parents[1] / "docs" / "images"
GIB = 2**30
BACKENDS = ("tensorflow", "jax", "torch")
CASES = {
    "auto": ("our layer (auto)", "C0", "o"),
    "naive": ("naive SAGAN block", "C3", "s"),
    "mha": ("Keras MultiHeadAttention", "C2", "^"),
}
MODES = {"fwd": "forward", "fwd+bwd": "forward+backward"}


def load_results(directory):
    """`{backend: result}` for every `attention_<backend>.json` found."""
    results = {}
    for backend in BACKENDS:
        path = directory / f"attention_{backend}.json"
        if path.exists():
            results[backend] = json.loads(path.read_text())
    return results


def measured(records, case, mode):
    """The records of one case and mode that have a time, by map size."""
    rows = [
        r
        for r in records
        if r["case"] == case and r["mode"] == mode and r.get("seconds")
    ]
    return sorted(rows, key=lambda r: r["size"])


def memory_gib(record):
    """(GiB, is an increase) for one record."""
    before = record.get("rss_before_step_bytes")
    if before is None:
        return record["peak_rss_bytes"] / GIB, False
    return (record["peak_rss_bytes"] - before) / GIB, True


def column_title(result):
    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    release = result.get("release", "release not recorded")
    return (
        f"{result['backend']}\n"
        f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
        f"{machine['processor']}\n{versions}\n"
        f"{result['started_utc'][:10]}, release {release}"
    )


def size_label(size, records):
    batches = {r["batch"] for r in records if r["size"] == size}
    batch = batches.pop() if len(batches) == 1 else None
    return f"{size}²" + (f"\nb{batch}" if batch else "")


# The page shows the figure about 690 px wide: type large enough that the
# machine/date titles stay readable there (about 11 px) without zooming.
STYLE = {"font.size": 11, "axes.titlesize": 13, "legend.fontsize": 11}


def plot_mode(results, mode):
    with plt.rc_context(STYLE):
        return _plot_mode(results, mode)


def _plot_mode(results, mode):
    figure, axes = plt.subplots(
        2,
        len(results),
        figsize=(3.5 * len(results), 7.6),
        squeeze=False,
        constrained_layout=True,
    )
    for column, result in enumerate(results.values()):
        records = result["records"]
        time_axis, memory_axis = axes[0, column], axes[1, column]
        increases = set()
        for case, (label, color, marker) in CASES.items():
            rows = measured(records, case, mode)
            if not rows:
                continue
            sizes = [r["size"] for r in rows]
            style = dict(label=label, color=color, marker=marker)
            time_axis.plot(sizes, [r["seconds"] for r in rows], **style)
            memory = [memory_gib(r) for r in rows]
            increases |= {increase for _, increase in memory}
            memory_axis.plot(sizes, [gib for gib, _ in memory], **style)
        sizes = sorted({r["size"] for r in records})
        for axis in (time_axis, memory_axis):
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xticks(sizes, [size_label(s, records) for s in sizes])
            axis.minorticks_off()
            axis.grid(True, which="major", alpha=0.3)
        time_axis.set_title(column_title(result))
        time_axis.set_ylabel("time per step, s (best)")
        memory_axis.set_ylabel(
            "RSS growth in the step, GiB"
            if increases == {True}
            else "process peak RSS, GiB"
            if increases == {False}
            else "RSS growth (or peak RSS), GiB"
        )
        memory_axis.set_xlabel("map size², batch (64 channels)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3)
    figure.suptitle(
        f"{MODES[mode]} pass on CPU: our layer, the naive SAGAN block and "
        "Keras MultiHeadAttention\n(missing points: skipped or out of "
        "memory)",
    )
    return figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    results = load_results(args.results)
    if not results:
        parser.error(f"no attention_<backend>.json in {args.results}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for mode in MODES:
        figure = plot_mode(results, mode)
        name = "bench_" + mode.replace("+", "_") + ".png"
        figure.savefig(args.output_dir / name, dpi=90)
        plt.close(figure)
        print(args.output_dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
