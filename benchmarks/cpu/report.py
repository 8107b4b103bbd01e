"""Markdown tables of `cpu/attention.py` results, and `summary.md`.

    python benchmarks/cpu/report.py    # rewrites them from the JSON
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(os.path.dirname(HERE), "results")
BACKENDS = ("tensorflow", "jax", "torch")
if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "common"))

import targets  # noqa: E402
from units import GIB  # noqa: E402
from units import attention_flops  # noqa: E402
from units import ratio  # noqa: E402

ORDER = ("auto", "dense", "naive", "mha")


def _index(records):
    table = {}
    for record in records:
        key = (record["size"], record["batch"], record["case"], record["mode"])
        table[key] = record
    return table


def _seconds(record):
    return None if record is None else record.get("seconds")


def _peak(record):
    return None if record is None else record.get("peak_rss_bytes")


def _cell(value, fmt):
    return "—" if value is None else fmt.format(value)


def _status(record):
    if record is None:
        return "not run"
    if "seconds" in record:
        return ""
    if "skipped" in record:
        return "skipped: " + record["skipped"]
    return "failed: " + record.get("error", "?")


def table_rows(result):
    records = _index(result["records"])
    rate = (result.get("matmul_roof") or {}).get("flops_per_second")
    channels = result["arguments"]["channels"]
    shapes = sorted({(r["size"], r["batch"]) for r in result["records"]})
    for size, batch in shapes:
        naive = {
            mode: records.get((size, batch, "naive", mode))
            for mode in ("fwd", "fwd+bwd")
        }
        for case in ORDER:
            fwd = records.get((size, batch, case, "fwd"))
            both = records.get((size, batch, case, "fwd+bwd"))
            if fwd is None and both is None:
                continue
            roof = None
            if rate and _seconds(both):
                flops = attention_flops(size, batch, channels, backward=True)
                roof = _seconds(both) / (flops / rate)
            notes = "; ".join(
                f"{mode}: {_status(record)}"
                for mode, record in (("fwd", fwd), ("fwd+bwd", both))
                if _status(record)
            )
            yield [
                f"{size}x{size}", str(batch), case,
                _cell(_seconds(fwd), "{:.4g}"),
                _cell(_seconds(both), "{:.4g}"),
                _cell(_peak(fwd) and _peak(fwd) / GIB, "{:.2f}"),
                _cell(_peak(both) and _peak(both) / GIB, "{:.2f}"),
                _cell(ratio(_seconds(fwd), _seconds(naive["fwd"])), "{:.2f}x"),
                _cell(
                    ratio(_seconds(both), _seconds(naive["fwd+bwd"])),
                    "{:.2f}x",
                ),
                _cell(ratio(_peak(both), _peak(naive["fwd+bwd"])), "{:.2f}x"),
                _cell(roof, "{:.1f}x"),
                notes,
            ]


HEADER = [
    "map", "batch", "case", "fwd s", "fwd+bwd s",
    "fwd whole-process peak RSS GiB", "fwd+bwd whole-process peak RSS GiB",
    "fwd vs naive", "fwd+bwd vs naive", "fwd+bwd peak RSS vs naive",
    "fwd+bwd vs roof", "notes",
]


def target_lines(result):
    """PASS/FAIL/NOT MEASURED for each CPU target (`targets.py`)."""
    backend = result["backend"]
    records = _index(result["records"])

    def get(size, batch, case):
        return records.get((size, batch, case, "fwd+bwd"))

    def line(name, value, target):
        verdict = targets.verdict(value, target)
        if value is None:
            return f"- {name}: {verdict}"
        # Three decimals: a ratio of 1.0005 against 1.0 reads as a FAIL.
        measured = targets.unit_text(round(value, 3), target.unit)
        limit = targets.unit_text(target.limit, target.unit)
        return f"- {name}: {verdict} ({measured}; target <= {limit})"

    lines = []
    for (size, batch), target in targets.CPU_MEMORY.items():
        auto = get(size, batch, "auto")
        lines.append(line(f"{size}x{size} b{batch} auto fwd+bwd peak RSS",
                          _peak(auto) and _peak(auto) / GIB, target))
    if backend in targets.CPU_TIME_LARGE:
        lines.append(line(
            "128x128 b4 auto/naive fwd+bwd time",
            ratio(_seconds(get(128, 4, "auto")),
                  _seconds(get(128, 4, "naive"))),
            targets.CPU_TIME_LARGE[backend]))
    if backend in targets.CPU_SMALL_BACKENDS:
        for size in targets.CPU_SMALL_SIZES:
            lines.append(line(
                f"{size}x{size} b4 auto/naive fwd+bwd time",
                ratio(_seconds(get(size, 4, "auto")),
                      _seconds(get(size, 4, "naive"))),
                targets.CPU_TIME_SMALL))
    return lines


def markdown(result, with_targets=True):
    """One backend's table; `with_targets`: then its targets' verdicts
    (maintainers' `summary.md`; the Benchmarks page shows the tables
    without them)."""
    machine = result["machine"]
    rate = (result.get("matmul_roof") or {}).get("flops_per_second")
    lines = [
        f"### {result['backend']} ({result['started_utc']}, release "
        f"{result.get('release', 'not recorded')})",
        "",
        f"{machine['cpus']} CPUs "
        f"({machine.get('cpu_model') or 'CPU model not recorded'}), "
        f"{machine['memory_gib']} GiB, {machine['processor']}, Python "
        f"{machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + ". Matmul roof: "
        + (f"{rate / 1e9:.0f} GFLOP/s" if rate else "not measured")
        + (f", package at commit {result['commit']}"
           if result.get("commit") else "")
        + ". Times are the best of the repeats; peak RSS is the whole "
        "process's (`ru_maxrss`, framework included), not the step's "
        "growth. `vs roof`: time over the layer's minimum FLOPs at the "
        "roof."
        + (" **Measured while other processes ran tests: noisy.**"
           if result["arguments"].get("allow_concurrent_tests") else ""),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    if with_targets:
        lines += ["", "Targets (`benchmarks/common/targets.py` gives each "
                  "reason):", ""] + target_lines(result)
    return "\n".join(lines + [""])


def summary(tables):
    """`summary.md`: the backends' tables (`markdown`), then every target
    with its reason."""
    parts = ["## CPU benchmark results", "",
             "Generated from `attention_<backend>.json` (`python "
             "benchmarks/common/tables.py`); each table names its machine, "
             "date and release.", ""]
    parts += list(tables)
    parts += ["### The targets and why", ""] + targets.reason_lines() + [""]
    return "\n".join(parts)


def write_reports(output_dir, backends):
    """Rewrites each `attention_<backend>.md` and `summary.md` from the
    `attention_<backend>.json` files, so the Markdown never differs from
    the JSON."""
    tables = []
    for backend in backends:
        path = os.path.join(output_dir, f"attention_{backend}.json")
        if not os.path.exists(path):
            continue
        with open(path) as file:
            result = json.load(file)
        tables.append(markdown(result))
        with open(path[:-len(".json")] + ".md", "w") as file:
            file.write(markdown(result, with_targets=False))
    with open(os.path.join(output_dir, "summary.md"), "w") as file:
        file.write(summary(tables))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    write_reports(args.results, BACKENDS)
    print(os.path.join(args.results, "summary.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
