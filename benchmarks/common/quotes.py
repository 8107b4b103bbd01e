"""The figures of the committed results files, by key, and the markers
that quote them.

Every number that the README, the docs or a docstring quotes from a
benchmark carries a marker naming its results file (in
`benchmarks/results/`, without `.json`) and its key:

    0.18x<!-- from attention_torch 128x4/auto/fwd+bwd/vs_naive -->   Markdown
    30.9 ms [from gpu_h200_0.1 jax/float32/128x8/chunked@1024/ms]

`tests/test_benchmarks_quotes.py` finds every marker and fails where the
quoted number differs from the file's, rounded to the quoted digits.
Keys (`figures` lists them all):

- CPU layer (`attention_<backend>`): `date`, `release`, `cpus`,
  `memory_gib`, `roof_gflops`, and `SIZExBATCH/CASE/MODE/` + `s` (best
  time), `peak_gib` (whole-process peak RSS), `growth_gib` (RSS growth
  during the step), `vs_naive`, `peak_vs_naive`, `vs_roof`.
- GPU layer (`gpu_...`): `date`, `release`, `roof/BACKEND/DTYPE`
  and `BACKEND/POLICY/SIZExBATCH/CASE/` + `ms`, `gib`, `vs_naive`;
  `accuracy/NAME` (a range: `/low`, `/high`).
- CPU thresholds (`cpu_thresholds_...`): `date`, `release`,
  `BACKEND/SIDE` (a range: `/low`, `/high`), `block_speedup/low|high`.
- Export speed (`export_speed_<backend>`): `date`, `release`, `cpus`,
  `roof_gflops`, and `ROUTE/` (`keras`, `export_model`, `model.export`)
  + `s`, `vs_keras`, `peak_mib`, `export_seconds`.
- Export measurements and other flat records (`kind: figures`, e.g.
  `export_memory_...`, `litert_quantization_...`): `date`, `release` and
  the keys of the file's `figures`, as written there.
- `targets`: the limits of `targets.py` (`_targets` lists the keys).
"""

import json
import pathlib
import re

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"
GIB = 2**30
# A number (or an ISO date), an optional unit, then the marker (after
# one space or line break at most).
MARKER = re.compile(
    r"(?P<value>\d{4}-\d{2}-\d{2}|\d+(?:\.\d+)?(?:e-?\d+)?)"
    r"(?P<unit> ?(?:x|ms|s|GiB|MiB|GFLOP/s|TFLOP/s|%))?"
    r"\s?(?:<!--|\[)\s*from (?P<file>[\w.-]+) (?P<key>[^\s\]]+)\s*"
    r"(?:-->|\])"
)


def load(name, results=RESULTS):
    with open(pathlib.Path(results) / f"{name}.json") as file:
        return json.load(file)


def figures(name, results=RESULTS):
    """`{key: value}` of one results file (module docstring), or of the
    targets (`targets`: the limits of `targets.py`)."""
    if name == "targets":
        return _targets()
    result = load(name, results)
    found = {"date": result["started_utc"][:10],
             "release": result.get("release")}
    kind = result.get("kind", "cpu_layer")
    found.update({"cpu_layer": _cpu_layer, "gpu_layer": _gpu_layer,
                  "kernel_thresholds": _thresholds,
                  "export_speed": _export_speed,
                  "figures": lambda r: r["figures"]}[kind](result))
    return found


def _targets():
    """`cpu/memory/SIZExBATCH`, `cpu/time/BACKEND`, `cpu/time/small`,
    `gpu/time/BACKEND`, `gpu/mixed_time`, `gpu/mixed_memory`,
    `gpu/float32_memory`."""
    import targets

    found = {f"cpu/memory/{size}x{batch}": target.limit
             for (size, batch), target in targets.CPU_MEMORY.items()}
    found.update({f"cpu/time/{backend}": target.limit
                  for backend, target in targets.CPU_TIME_LARGE.items()})
    found.update({f"gpu/time/{backend}": target.limit
                  for backend, target in targets.GPU_TIME.items()})
    found.update({"cpu/time/small": targets.CPU_TIME_SMALL.limit,
                  "gpu/mixed_time": targets.GPU_MIXED_TIME.limit,
                  "gpu/mixed_memory": targets.GPU_MIXED_MEMORY.limit,
                  "gpu/float32_memory": targets.GPU_FLOAT32_MEMORY.limit})
    return found


def _range(prefix, value):
    if isinstance(value, list):
        return {f"{prefix}/low": value[0], f"{prefix}/high": value[1]}
    return {prefix: value}


def _ratio(value, base):
    return value / base if value is not None and base else None


def _cpu_layer(result):
    machine = result["machine"]
    roof = (result.get("matmul_roof") or {}).get("flops_per_second")
    found = {"cpus": machine["cpus"], "memory_gib": machine["memory_gib"],
             "roof_gflops": roof and roof / 1e9}
    records = {(r["size"], r["batch"], r["case"], r["mode"]): r
               for r in result["records"] if "seconds" in r}
    channels = result["arguments"]["channels"]
    for (size, batch, case, mode), record in records.items():
        naive = records.get((size, batch, "naive", mode), {})
        key = f"{size}x{batch}/{case}/{mode}/"
        peak = record["peak_rss_bytes"]
        found[key + "s"] = record["seconds"]
        found[key + "peak_gib"] = peak / GIB
        if "rss_before_step_bytes" in record:
            found[key + "growth_gib"] = (
                peak - record["rss_before_step_bytes"]) / GIB
        found[key + "vs_naive"] = _ratio(record["seconds"],
                                         naive.get("seconds"))
        found[key + "peak_vs_naive"] = _ratio(peak,
                                              naive.get("peak_rss_bytes"))
        if roof and mode == "fwd+bwd":
            from units import attention_flops

            flops = attention_flops(size, batch, channels, backward=True)
            found[key + "vs_roof"] = record["seconds"] / (flops / roof)
    return {k: v for k, v in found.items() if v is not None}


def _gpu_layer(result):
    found = {}
    for backend, rates in result.get("matmul_roof_tflops", {}).items():
        for dtype, rate in rates.items():
            found[f"roof/{backend}/{dtype}"] = rate
    records = {(r["backend"], r["policy"], r["size"], r["batch"],
                r["case"]): r for r in result["records"]
               if r["status"] == "ok"}
    for (backend, policy, size, batch, case), record in records.items():
        naive = records.get((backend, policy, size, batch, "naive"), {})
        key = f"{backend}/{policy}/{size}x{batch}/{case}/"
        found[key + "ms"] = record["median_ms"]
        if record.get("working_gib") is not None:
            found[key + "gib"] = record["working_gib"]
        if naive:
            found[key + "vs_naive"] = record["median_ms"] / naive["median_ms"]
    for name, value in result.get("accuracy", {}).items():
        if name != "note":
            found.update(_range(f"accuracy/{name}", value))
    return found


def _thresholds(result):
    found = {}
    for record in result["records"]:
        found.update(_range(f"{record['backend']}/{record['side']}",
                            record["chunked_vs_dense"]))
    speedup = result.get("block_size", {}).get(
        "speedup_of_cache_sized_blocks")
    if speedup:
        found.update(_range("block_speedup", speedup))
    return found


def _export_speed(result):
    roof = result["matmul_roof"]["flops_per_second"]
    found = {"cpus": result["machine"]["cpus"], "roof_gflops": roof / 1e9}
    for record in result["records"]:
        route = record["route"]
        found[f"{route}/s"] = record["seconds"]
        for name in ("vs_keras", "peak_mib", "export_seconds"):
            if name in record:
                found[f"{route}/{name}"] = record[name]
    return found


def quotes(text):
    """Every marker in `text`: `(quoted value, file, key)`."""
    return [(m["value"], m["file"], m["key"]) for m in MARKER.finditer(text)]


def matches(quoted, value):
    """Whether `quoted` (text) is `value` rounded to the quoted digits."""
    if isinstance(value, str):
        return quoted == value
    mantissa = quoted.split("e")[0]
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if "e" in quoted:  # 1e-5, 2.6e-2
        return float(f"{value:.{digits}e}") == float(quoted)
    return f"{value:.{digits}f}" == quoted
