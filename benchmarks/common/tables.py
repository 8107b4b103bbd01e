"""Markdown tables of the results files that no benchmark script writes
itself: the imported GPU measurements and CPU thresholds, and the CPU
headline table. The Benchmarks page includes them (MkDocs snippets).

    python benchmarks/common/tables.py   # or: make bench-plots

rewrites every generated Markdown file in `benchmarks/results/` from the
JSON beside it, the CPU benchmark's tables included (`cpu/report.py`);
`tests/test_benchmarks_quotes.py` fails when one differs from its JSON.
"""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "cpu")]

import quotes  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402

CASES = ("naive", "auto", "dense", "fused", "chunked", "fused_lowp")
CPU_BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def _table(header, rows):
    return [_row(header), "|" + "---|" * len(header)] + [_row(r)
                                                         for r in rows]


def gpu_layer(result):
    """The imported GPU measurements: one table, `ms / GiB` per case."""
    cases = [c for c in CASES if any(r["case"] == c
                                     for r in result["records"])]
    cases += sorted({r["case"] for r in result["records"]} - set(cases))
    table = {}
    for record in result["records"]:
        key = (record["backend"], record["size"], record["batch"],
               record["channels"], record["policy"])
        if record["status"] != "ok":
            cell = record["status"].upper()
        elif record.get("working_gib") is None:
            cell = f"{record['median_ms']:g}"
        else:
            cell = f"{record['median_ms']:g} / {record['working_gib']:.2f}"
        table.setdefault(key, {})[record["case"]] = cell
    rows = [[backend, f"{size}x{size}", str(batch), str(channels), policy]
            + [cells.get(case, "") for case in cases]
            for (backend, size, batch, channels, policy), cells
            in table.items()]
    machine, roof = result["machine"], result["matmul_roof_tflops"]
    lines = [
        f"**{result['title']}**: {machine['description']}, measured "
        f"{result['started_utc']} (package at commit {result['commit']}; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + "). Matmul roof in the same processes: "
        + "; ".join(f"{b} bfloat16 {r['bfloat16']:g}, float32 "
                    f"{r['float32']:g} TFLOP/s" for b, r in roof.items())
        + ". Cells: median fwd+bwd ms / GPU working memory GiB.",
        "",
    ]
    lines += _table(["backend", "map", "batch", "C", "policy", *cases], rows)
    lines += [""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def thresholds(result):
    """The imported CPU crossover ratios of `auto`'s thresholds."""
    sides = sorted({r["side"] for r in result["records"]})
    backends = list(dict.fromkeys(r["backend"] for r in result["records"]))
    values = {(r["backend"], r["side"]): r["chunked_vs_dense"]
              for r in result["records"]}

    def cell(value):
        if value is None:
            return ""
        if isinstance(value, list):
            return f"{value[0]:.2f}-{value[1]:.2f}"
        return f"{value:.2f}"

    rows = [[f"{side}x{side}"] + [cell(values.get((b, side)))
                                  for b in backends] for side in sides]
    lines = [
        f"**{result['title']}**: {result['machine']['description']}, "
        f"{result['started_utc']}, release {result['release']} (commit "
        f"{result['commit']}).",
        "",
    ]
    lines += _table(["map (N = M)"] + [f"{CPU_BACKENDS[b]} chunked/dense"
                                       for b in backends], rows)
    lines += [""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def cpu_headline(results):
    """128x128 batch 4 fwd+bwd per backend: naive, `auto`, their ratio,
    peaks, and 256x256 batch 1 (the Benchmarks page's headline; the
    targets' verdicts are `targets.md`'s)."""
    rows = []
    for backend, name in CPU_BACKENDS.items():
        if backend not in results:
            continue
        found = quotes.figures(f"attention_{backend}",
                               results[backend]["_folder"])
        run = results[backend]
        machine = run["machine"]
        auto, naive = "128x4/auto/fwd+bwd/", "128x4/naive/fwd+bwd/"
        ratio = found[auto + "vs_naive"]
        big = "256x1/auto/fwd+bwd/"
        rows.append([
            f"{name} ({run['started_utc'][:10]}, release {run['release']})",
            f"{machine['cpus']} CPUs "
            f"({machine.get('cpu_model') or 'model not recorded'}), "
            f"{machine['memory_gib']} GiB, roof "
            f"{found['roof_gflops']:.0f} GFLOP/s",
            f"{found[naive + 's']:.3g} s", f"{found[auto + 's']:.3g} s",
            # Three decimals: 1.0005 and 0.9995 are not both "1.00x".
            f"{ratio:.3f}x",
            f"{found[naive + 'peak_gib']:.1f} / {found[auto + 'peak_gib']:.2f}"
            " GiB",
            f"{found[big + 's']:.3g} s, {found[big + 'peak_gib']:.2f} GiB",
            f"{found[auto + 'vs_roof']:.1f}x",
        ])
    header = ["128x128, batch 4, fwd+bwd", "machine", "naive block",
              "our layer (`auto`)", "ours / naive",
              "whole-process peak RSS: naive / ours",
              "256x256 batch 1: ours", "ours vs matmul roof"]
    return "\n".join(_table(header, rows)) + "\n"


def target_verdicts(results):
    """Each CPU target's verdict per backend (with its run's machine and
    date), then every target's reason."""
    lines = []
    for backend, name in CPU_BACKENDS.items():
        if backend not in results:
            continue
        run = results[backend]
        machine = run["machine"]
        lines += [f"**{name}**, {run['started_utc'][:10]}, release "
                  f"{run['release']}, {machine['cpus']} CPUs, "
                  f"{machine['memory_gib']} GiB "
                  f"(`attention_{backend}.json`):", ""]
        lines += report.target_lines(run) + [""]
    lines += ["Why each limit:", ""] + targets.reason_lines()
    return "\n".join(lines) + "\n"


RENDERERS = {"gpu_layer": gpu_layer, "kernel_thresholds": thresholds}


def generated(folder=quotes.RESULTS):
    """`{path: text}` of every generated Markdown file, from the JSON."""
    folder = pathlib.Path(folder)
    texts = {}
    cpu = {}
    for path in sorted(folder.glob("*.json")):
        result = quotes.load(path.stem, folder)
        kind = result.get("kind", "cpu_layer")
        if kind == "cpu_layer":
            cpu[result["backend"]] = {**result, "_folder": folder}
            texts[path.with_suffix(".md")] = report.markdown(
                result, with_targets=False)
        elif kind in RENDERERS:
            texts[path.with_suffix(".md")] = RENDERERS[kind](result)
    texts[folder / "cpu_headline.md"] = cpu_headline(cpu)
    texts[folder / "targets.md"] = target_verdicts(cpu)
    texts[folder / "summary.md"] = report.summary(
        [report.markdown(cpu[b]) for b in report.BACKENDS if b in cpu])
    return texts


def main():
    for path, text in generated().items():
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
