"""Console lines, Markdown tables, target and check verdicts for
`benchmarks/gpu/gpu.py` results."""

import json
import math

import gpu_check
from targets import GPU_FLOAT32_MEMORY
from targets import GPU_MIXED_MEMORY
from targets import GPU_MIXED_TIME
from targets import GPU_TIME
from units import ratio

GIB = 2**30
CASES = ("naive", "auto", "dense", "chunked", "fused")
MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")
# The limits, each with its reason, are in common/targets.py.
TIME_LIMITS = {backend: target.limit for backend, target in GPU_TIME.items()}
MIXED_TIME_LIMIT = GPU_MIXED_TIME.limit
MIXED_MEMORY_GIB = GPU_MIXED_MEMORY.limit
FLOAT32_MEMORY_GIB = GPU_FLOAT32_MEMORY.limit
MEMORY_METHODS = {
    "torch": "peak allocated during one step minus allocated before",
    "jax": "compiled step's temp + output bytes (XLA memory analysis)",
    "tensorflow": "allocator peak during one step minus current before",
}


def _key(shape, policy, case):
    return (*tuple(shape), policy, case)


def _index(records):
    return {
        _key((r["size"], r["batch"], r["channels"]), r["policy"], r["case"]): r
        for r in records
    }


def milliseconds(record):
    """Median ms of a measured record, else None."""
    if record is None or record.get("status") != "ok":
        return None
    return record["median_ms"]


def gibibytes(record):
    """Working memory in GiB of a measured record, else None."""
    if record is None or record.get("status") != "ok":
        return None
    memory = record.get("working_bytes")
    return None if memory is None else memory / GIB


def _cell(record):
    if record is None:
        return ""
    if record["status"] == "error":  # a FAIL, with why
        why = "; ".join(record.get("problems") or [record["error"][:100]])
        return "ERROR (FAIL): " + why.replace("|", "/")
    if record["status"] != "ok":
        return record["status"].upper()
    memory = gibibytes(record)
    memory = "—" if memory is None else f"{memory:.2f}"
    kernel = gpu_check.kernel_name(record.get("kernel"))
    kernel = f" ({kernel})" if kernel else ""
    failed = " FAIL" if record.get("verdict") == "FAIL" else ""
    return f"{record['median_ms']:.4g} / {memory}{kernel}{failed}"


def describe(record):
    """The console line of one worker record: a case's time, memory,
    kernel, error and verdict (FAIL with its reasons), else the JSON."""
    if record["kind"] != "case":
        return json.dumps(record)
    label = (f"{record['size']}x{record['size']} b{record['batch']} "
             f"C{record['channels']} {record['policy']:14s} "
             f"{record['case']:8s}")
    if record["status"] == "error":
        return f"{label} error: FAIL: {'; '.join(record['problems'])}"
    if record["status"] != "ok":
        return f"{label} {record['status']}: {record['error'][:100]}"
    memory = record["working_bytes"]
    memory = "—" if memory is None else f"{memory / GIB:.3f} GiB"
    line = f"{label} {record['median_ms']:9.2f} ms  {memory}  "
    if "relative_error" in record:
        line += (f"{gpu_check.kernel_name(record['kernel']) or '-':14s} "
                 f"err {record['relative_error']:.2e}  ")
    line += record["verdict"]
    if record["problems"]:
        line += ": " + "; ".join(record["problems"])
    return line


def failed_checks(result):
    """The cases that FAIL: a check that failed or raised, or a case that
    raised anything but out of memory."""
    return [r for r in result["records"] if r.get("verdict") == "FAIL"]


def run_problems(result):
    """Why the benchmark step must exit non-zero: FAIL cases, checks not
    made for memory, a worker that crashed or was killed."""
    problems = [f"{len(failed)} cases FAIL" for failed in
                [failed_checks(result)] if failed]
    unchecked = [r for r in result["records"]
                 if r.get("verdict") == "NOT CHECKED"]
    if unchecked:
        problems.append(f"{len(unchecked)} cases NOT CHECKED (out of "
                        "memory in the check)")
    worker = result["worker"]
    if worker["timed_out"]:
        problems.append("the worker was killed at its time limit")
    elif worker["returncode"]:
        problems.append(f"the worker exited {worker['returncode']}: "
                        + " | ".join(worker["stderr_tail"][-2:]))
    return problems


def check_lines(result):
    """How many cases were checked, and one line per FAIL or case whose
    check ran out of memory."""
    checked = [r for r in result["records"]
               if r["status"] == "ok" and "verdict" in r]
    failed = failed_checks(result)
    unchecked = [r for r in checked if r["verdict"] == "NOT CHECKED"]
    lines = [f"- {len(checked) - len(unchecked)} cases checked, "
             f"{len(failed)} FAIL (errors included)."]
    for record in failed + unchecked:
        shape = (record["size"], record["batch"], record["channels"])
        lines.append(f"- {record['verdict']} {_shape_name(shape)} "
                     f"{record['policy']} {record['case']}: "
                     + "; ".join(record["problems"]))
    return lines


def _shape_name(shape):
    size, batch, channels = shape
    return f"{size}x{size} b{batch} C{channels}"


def _verdict(name, value, limit, unit):
    """One target: PASS/FAIL with its value, or why it has none."""
    if isinstance(value, str):
        return {"name": name, "verdict": value, "value": None,
                "limit": limit, "unit": unit}
    verdict = "PASS" if value <= limit else "FAIL"
    return {"name": name, "verdict": verdict, "value": value,
            "limit": limit, "unit": unit}


def _ratio_target(table, shape, policy, limit):
    name = f"{policy} {_shape_name(shape)}: auto/naive time"
    auto = table.get(_key(shape, policy, "auto"))
    naive = table.get(_key(shape, policy, "naive"))
    if naive is not None and naive["status"] == "oom":
        return _verdict(name, "N/A (naive block out of memory)", limit, "x")
    measured = ratio(milliseconds(auto), milliseconds(naive))
    if measured is None:
        return _verdict(name, "NOT MEASURED", limit, "x")
    return _verdict(name, measured, limit, "x")


def _memory_target(table, shape, policy, limit):
    name = f"{policy} {_shape_name(shape)}: auto working memory"
    memory = gibibytes(table.get(_key(shape, policy, "auto")))
    if memory is None:
        return _verdict(name, "NOT MEASURED", limit, " GiB")
    return _verdict(name, memory, limit, " GiB")


def targets(result):
    """The GPU targets (`common/targets.py`) of one backend's result, as
    dicts with `name`, `verdict` (PASS, FAIL, NOT MEASURED, N/A ...),
    `value` and `limit`.
    The first shape of the run is the small-map target, the last two the
    large maps (so a smoke run checks the same code on its tiny maps)."""
    backend = result["backend"]
    if backend not in TIME_LIMITS:
        return [_verdict(f"{backend} on GPUs", "N/A (no targets set)",
                         None, "")]
    table = _index(result["records"])
    shapes = [tuple(shape) for shape in result["arguments"]["shapes"]]
    policies = result["arguments"]["policies"]
    mixed = [p for p in MIXED_POLICIES if p in policies]
    limit = TIME_LIMITS[backend]
    found = []
    for policy in mixed:
        for shape in shapes[-2:]:
            found.append(_ratio_target(table, shape, policy, MIXED_TIME_LIMIT))
            found.append(
                _memory_target(table, shape, policy, MIXED_MEMORY_GIB)
            )
    if "float32" in policies:
        for shape in shapes:
            found.append(_ratio_target(table, shape, "float32", limit))
        found.append(
            _memory_target(table, shapes[-1], "float32", FLOAT32_MEMORY_GIB)
        )
    for policy in mixed:
        found.append(_ratio_target(table, shapes[0], policy, limit))
    return found


def target_line(target):
    """`- name: PASS (0.31x; target <= 0.45x)`."""
    if target["value"] is None:
        return f"- {target['name']}: {target['verdict']}"
    unit = target["unit"]
    return (f"- {target['name']}: {target['verdict']} "
            f"({target['value']:.2f}{unit}; target <= "
            f"{target['limit']:.2f}{unit})")


def table_lines(result):
    """One row per shape and policy: `ms / GiB` per case, auto/naive."""
    table = _index(result["records"])
    header = ["map", "batch", "C", "policy", *CASES, "auto/naive"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for shape in result["arguments"]["shapes"]:
        for policy in result["arguments"]["policies"]:
            row = [table.get(_key(shape, policy, c)) for c in CASES]
            if all(record is None for record in row):
                continue
            auto_ratio = ratio(milliseconds(row[1]), milliseconds(row[0]))
            size, batch, channels = shape
            cells = [f"{size}x{size}", str(batch), str(channels), policy]
            cells += [_cell(record) for record in row]
            cells.append("" if auto_ratio is None else f"{auto_ratio:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _tflops(value):
    if value is None or not math.isfinite(value):
        return "not measured"
    return f"{value:.3g} TFLOP/s"


def header_lines(result):
    info = result["info"]
    device, found = info["device"], info["versions"]
    roof = info.get("matmul_roof_tflops") or {}
    backend = result["backend"]
    steps = result["arguments"]["steps"]
    capability = device.get("compute_capability")
    text = (
        (f"Compute capability {capability}. " if capability else "")
        + ", ".join(f"{k} {v}" for k, v in found.items())
        + f". Matmul roof in the same process: bfloat16 "
        f"{_tflops(roof.get('bfloat16'))}, float32 "
        f"{_tflops(roof.get('float32'))} (float32 matmul precision: "
        f"{device.get('float32_matmul', 'default')}). Cells: median "
        f"fwd+bwd ms over up to {steps} synchronised steps after warm-up / "
        f"working memory GiB ({MEMORY_METHODS[backend]}); OOM: out of "
        "memory; (name): the kernel the layer ran, [block size]; FAIL: a "
        "wrong kernel or an output error above the case's tolerance "
        "(Checks). `auto/naive`: time ratio."
    )
    if device.get("float32_matmul_note"):
        text += " Note: " + device["float32_matmul_note"] + "."
    return [
        f"### {backend} on {device['name']} ({result['started_utc']})",
        "",
        text,
        "",
    ]


def problem_lines(result):
    """The budget stop and every error other than out of memory."""
    lines = []
    stopped = result.get("stopped")
    if stopped:
        lines.append(f"- Budget reached after {stopped['after_seconds']:.0f}"
                     " s: the remaining cases were not run.")
    worker = result["worker"]
    if worker["timed_out"] or worker["returncode"]:
        lines.append(f"- Worker ended abnormally: {worker}")
    for record in result["records"]:
        if record["status"] == "error":
            shape = (record["size"], record["batch"], record["channels"])
            lines.append(f"- {_shape_name(shape)} {record['policy']} "
                         f"{record['case']}: {record['error'][:200]}")
    return lines


def markdown(result):
    """The whole Markdown report of one backend's result."""
    found = result.get("targets") or targets(result)
    lines = header_lines(result) + table_lines(result)
    lines += ["", "Checks (kernel ran; output error against a float32 "
              "reference of the same case, relative to the attention term):",
              ""]
    lines += check_lines(result)
    lines += ["", "Targets (`benchmarks/common/targets.py` gives each "
              "reason):", ""]
    lines += [target_line(target) for target in found]
    problems = problem_lines(result)
    if problems:
        lines += ["", "Problems:", ""] + problems
    return "\n".join(lines) + "\n"
