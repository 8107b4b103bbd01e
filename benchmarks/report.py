"""Markdown tables for `benchmarks/attention.py` results."""

import os

GIB = 2**30
ORDER = ("auto", "dense", "naive", "mha")


def attention_flops(size, batch, channels, backward):
    """FLOPs of the layer at the minimum (no recomputation): the two
    attention matmuls and the four 1x1 projections; the backward pass
    costs two more of each."""
    positions = size * size
    key_width, value_width = channels // 8, channels // 2
    attention = 2 * batch * positions**2 * (key_width + value_width)
    projections = 2 * batch * positions * channels * 2 * (
        key_width + value_width
    )
    return (attention + projections) * (3 if backward else 1)


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


def ratio(value, base):
    """`value / base`, or None when either is missing."""
    if value is None or not base:
        return None
    return value / base


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
    "map", "batch", "case", "fwd s", "fwd+bwd s", "fwd peak GiB",
    "fwd+bwd peak GiB", "fwd vs naive", "fwd+bwd vs naive",
    "fwd+bwd peak vs naive", "fwd+bwd vs roof", "notes",
]


def target_lines(result, time_targets):
    """PASS/FAIL/NOT MEASURED for each target of issue 4."""
    backend = result["backend"]
    records = _index(result["records"])
    def get(size, batch, case):
        return records.get((size, batch, case, "fwd+bwd"))

    lines = []

    def check(name, value, limit, fmt):
        if value is None:
            lines.append(f"- {name}: NOT MEASURED")
        else:
            verdict = "PASS" if value <= limit else "FAIL"
            lines.append(f"- {name}: {verdict} ({fmt.format(value)}; "
                         f"target <= {fmt.format(limit)})")

    auto_128 = get(128, 4, "auto")
    check("128x128 b4 auto fwd+bwd peak RSS GiB",
          _peak(auto_128) and _peak(auto_128) / GIB, 2.0, "{:.2f}")
    check("128x128 b4 auto/naive fwd+bwd time",
          ratio(_seconds(auto_128), _seconds(get(128, 4, "naive"))),
          time_targets[backend], "{:.2f}")
    auto_256 = get(256, 1, "auto")
    check("256x256 b1 auto fwd+bwd peak RSS GiB",
          _peak(auto_256) and _peak(auto_256) / GIB, 4.0, "{:.2f}")
    if backend in ("tensorflow", "jax"):
        for size in (16, 32):
            check(f"{size}x{size} b4 auto/naive fwd+bwd time",
                  ratio(_seconds(get(size, 4, "auto")),
                         _seconds(get(size, 4, "naive"))), 1.1, "{:.2f}")
    return lines


def markdown(result, time_targets):
    machine = result["machine"]
    rate = (result.get("matmul_roof") or {}).get("flops_per_second")
    lines = [
        f"### {result['backend']} ({result['started_utc']})",
        "",
        f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
        f"{machine['processor']}, Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + ". Matmul roof: "
        + (f"{rate / 1e9:.0f} GFLOP/s" if rate else "not measured")
        + ". Times are the best of the repeats; peak is the RSS of the "
        "whole process. `vs roof`: time over the layer's minimum FLOPs at "
        "the roof."
        + (" **Measured while other processes ran tests: noisy.**"
           if result["arguments"].get("allow_concurrent_tests") else ""),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    lines += ["", "Targets:", ""] + target_lines(result, time_targets) + [""]
    return "\n".join(lines)


def write_summary(output_dir, backends):
    """`summary.md`: the latest table of every backend, for the README."""
    parts = ["## Benchmark results", ""]
    for backend in backends:
        path = os.path.join(output_dir, f"attention_{backend}.md")
        if os.path.exists(path):
            with open(path) as file:
                parts.append(file.read())
    with open(os.path.join(output_dir, "summary.md"), "w") as file:
        file.write("\n".join(parts))
