"""The GPU benchmark (`benchmarks/gpu/gpu*.py`): its pure parts, its CPU smoke
mode run once per installed backend in subprocesses (every case checked
without a FAIL). The checker itself: `test_benchmarks_gpu_check.py`;
`benchmarks/gpu/run_gpu.sh`: `test_run_gpu.py`."""

import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks" / "gpu"
sys.path[:0] = [str(BENCHMARKS), str(ROOT / "benchmarks" / "common")]

import gpu_cases  # noqa: E402
import gpu_device  # noqa: E402
import gpu_measure  # noqa: E402
import gpu_report  # noqa: E402

pytestmark = pytest.mark.once

INSTALLED = [b for b in gpu_cases.BACKENDS if importlib.util.find_spec(b)]


# The target cases (naive and auto) on every backend: what the targets
# need. Every case on JAX took 61 s of the suite's 2 cores, against 17 s
# per backend for these; the other cases run through the same worker
# code, and `gpu_check.expected_kernel` has its own tests
# (`test_benchmarks_gpu_check.py`).
SMOKE_CASES = list(gpu_cases.TARGET_CASES)


def _record(shape, policy, case, ms=1.0, memory=2**30 // 10, status="ok"):
    size, batch, channels = shape
    record = {"kind": "case", "size": size, "batch": batch,
              "channels": channels, "policy": policy, "case": case,
              "status": status}
    if status == "ok":
        record.update(median_ms=ms, working_bytes=memory)
    else:
        record["error"] = "RuntimeError('CUDA out of memory')"
    return record


def _result(backend, records, shapes=((32, 32, 256), (128, 8, 64),
                                      (256, 2, 64))):
    return {
        "backend": backend,
        "arguments": {"shapes": [list(s) for s in shapes],
                      "policies": list(gpu_cases.POLICIES), "steps": 10},
        "records": records,
    }


def test_slugify_names_devices_for_file_names():
    assert gpu_device.slugify("NVIDIA H200") == "nvidia-h200"
    assert gpu_device.slugify("NVIDIA A100-SXM4-80GB") == (
        "nvidia-a100-sxm4-80gb"
    )
    assert gpu_device.slugify("cpu") == "cpu"
    assert gpu_device.slugify("  ") == "unknown"


def test_plan_runs_the_target_cases_first():
    shapes = [(8, 1, 8), (16, 1, 8)]
    planned = list(gpu_cases.plan(shapes, ["float32"],
                                  list(gpu_cases.IMPLEMENTATIONS)))
    cases = [case for _, _, case in planned]
    assert len(planned) == 2 * len(gpu_cases.IMPLEMENTATIONS)
    assert set(cases[:4]) == {"naive", "auto"}
    assert "naive" not in cases[4:] and "auto" not in cases[4:]


def test_slow_cases_get_fewer_timed_steps():
    spec = {"steps": 10, "max_case_seconds": 15.0}
    assert gpu_measure.timed_steps(spec, 0.01) == 10
    assert gpu_measure.timed_steps(spec, 3.0) == 5
    assert gpu_measure.timed_steps(spec, 60.0) == 3


def test_out_of_memory_is_recognised_in_each_backends_words():
    assert gpu_measure.is_oom(RuntimeError("CUDA out of memory. Tried to"))
    assert gpu_measure.is_oom(ValueError("RESOURCE_EXHAUSTED: Out of memory"))
    assert gpu_measure.is_oom(ValueError("OOM when allocating tensor"))
    assert not gpu_measure.is_oom(ValueError("shapes do not match"))


def test_error_traces_keep_no_machine_folders():
    trace = 'File "/home/someone/site/keras/src/ops/nn.py", line 3'
    assert gpu_measure.without_folders(trace) == (
        'File ".../src/ops/nn.py", line 3'
    )


def test_targets_pass_fail_and_naive_out_of_memory():
    small, large, largest = (32, 32, 256), (128, 8, 64), (256, 2, 64)
    records = []
    for policy in gpu_cases.POLICIES:
        records += [_record(small, policy, "naive", 10.0),
                    _record(small, policy, "auto", 11.5)]
        records += [_record(large, policy, "naive", 20.0),
                    _record(large, policy, "auto", 8.0)]
    records += [_record(largest, "float32", "naive", status="oom"),
                _record(largest, "float32", "auto", 200.0, 3 * 2**30)]
    found = {t["name"]: t["verdict"]
             for t in gpu_report.targets(_result("torch", records))}
    assert found["float32 32x32 b32 C256: auto/naive time"] == "PASS"
    assert found["mixed_float16 32x32 b32 C256: auto/naive time"] == "PASS"
    assert found["mixed_bfloat16 128x128 b8 C64: auto/naive time"] == "PASS"
    assert found["mixed_bfloat16 128x128 b8 C64: auto working memory"] == (
        "PASS"
    )
    assert found["float32 256x256 b2 C64: auto/naive time"].startswith("N/A")
    assert found["float32 256x256 b2 C64: auto working memory"] == "FAIL"
    assert found["mixed_bfloat16 256x256 b2 C64: auto/naive time"] == (
        "NOT MEASURED"
    )
    # 11.5 / 10 passes torch's 1.2x and fails JAX's 1.1x.
    jax_found = {t["name"]: t["verdict"]
                 for t in gpu_report.targets(_result("jax", records))}
    assert jax_found["float32 32x32 b32 C256: auto/naive time"] == "FAIL"


def _failed_case(shape, policy, case, error):
    """A record as the worker writes it for a case that raised `error`."""
    record = {"kind": "case", "size": shape[0], "batch": shape[1],
              "channels": shape[2], "policy": policy, "case": case}
    try:
        raise error
    except Exception as raised:  # noqa: BLE001 - as the worker catches it
        gpu_measure._record_failure(record, raised)
    return record


def test_a_case_that_raises_is_a_fail_with_its_first_line():
    shape = (128, 8, 64)
    error = TypeError("unsupported operand\n  a second line")
    records = [_record(shape, "float32", "naive", 40.0),
               _failed_case(shape, "float32", "auto", error),
               _failed_case(shape, "float32", "dense",
                            RuntimeError("CUDA out of memory. Tried"))]
    result = {**_result("torch", records, shapes=[shape]),
              "worker": {"timed_out": False, "returncode": 0,
                         "stderr_tail": []}}
    assert records[1]["status"] == "error"
    assert records[1]["problems"] == ["raised TypeError: unsupported operand"]
    assert records[2]["status"] == "oom" and "verdict" not in records[2]
    assert gpu_report.failed_checks(result) == [records[1]]
    assert gpu_report.run_problems(result) == ["1 cases FAIL"]
    (row,) = [line for line in gpu_report.table_lines(result)
              if "| float32 |" in line]
    assert "ERROR (FAIL): raised TypeError: unsupported operand" in row
    assert "| OOM |" in row
    checks = gpu_report.check_lines(result)
    assert checks[0] == "- 0 cases checked, 1 FAIL (errors included)."
    assert checks[1].startswith("- FAIL 128x128 b8 C64 float32 auto: raised")


def test_a_crashed_worker_or_unchecked_case_fails_the_step():
    shape = (8, 2, 16)
    unchecked = {**_record(shape, "float32", "auto"),
                 "verdict": "NOT CHECKED", "problems": ["check raised OOM"]}
    result = {**_result("jax", [unchecked], shapes=[shape]),
              "worker": {"timed_out": False, "returncode": -9,
                         "stderr_tail": ["Killed"]}}
    assert gpu_report.run_problems(result) == [
        "1 cases NOT CHECKED (out of memory in the check)",
        "the worker exited -9: Killed"]
    result["records"], result["worker"]["returncode"] = [], 0
    assert gpu_report.run_problems(result) == []


def test_table_shows_out_of_memory_and_ratio():
    shape = (128, 8, 64)
    records = [_record(shape, "float32", "naive", 40.0),
               _record(shape, "float32", "auto", 20.0),
               _record(shape, "float32", "dense", status="oom")]
    lines = gpu_report.table_lines(_result("jax", records, shapes=[shape]))
    row = [line for line in lines if "| float32 |" in line]
    assert len(row) == 1
    assert "| OOM |" in row[0] and row[0].endswith("| 0.50x |")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """Runs the smoke mode once per installed backend into a temporary
    folder (never benchmarks/results)."""
    output = tmp_path_factory.mktemp("gpu_benchmark")
    results = {}
    for backend in INSTALLED:
        command = [
            sys.executable, str(BENCHMARKS / "gpu.py"), "--smoke",
            "--backends", backend, "--output-dir", str(output),
            "--implementations", *SMOKE_CASES,
        ]
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        (path,) = output.glob(f"gpu_*_{backend}.json")
        results[backend] = json.loads(path.read_text())
    return output, results


@pytest.mark.parametrize("backend", INSTALLED)
def test_smoke_run_measures_every_case(smoke_results, backend):
    _, results = smoke_results
    result = results[backend]
    expected = {
        (*shape, policy, case)
        for shape in gpu_cases.SMOKE_SHAPES
        for policy in gpu_cases.POLICIES
        for case in SMOKE_CASES
    }
    found = [(r["size"], r["batch"], r["channels"], r["policy"], r["case"])
             for r in result["records"]]
    assert sorted(found) == sorted(expected)
    for record in result["records"]:
        assert record["status"] == "ok", record
        for field in ("median_ms", "min_ms"):
            assert math.isfinite(record[field]) and record[field] > 0
        # The kernel the layer reports, checked against the expected one
        # and the output against the float32 reference: no FAIL on CPU.
        assert record["verdict"] == "PASS", record
        assert record["kernel"] == record["expected_kernel"]
        if record["case"] == "naive":
            assert record["kernel"] is None
        else:
            assert record["kernel"]["implementation"] in (
                "dense", "chunked", "fused")
            if record["case"] != "auto":
                assert record["kernel"]["implementation"] == record["case"]
        assert 0 <= record["relative_error"] <= record["tolerance"]
        if backend == "jax":  # XLA's memory analysis works on CPU too
            assert record["working_bytes"] > 0
        elif not result["info"]["device"]["gpu"]:
            assert record["working_bytes"] is None
    roof = result["info"]["matmul_roof_tflops"]
    assert roof["float32"] > 0
    assert result["stopped"] is None and result["worker"]["returncode"] == 0


@pytest.mark.parametrize("backend", INSTALLED)
def test_smoke_run_checks_targets_and_writes_reports(smoke_results, backend):
    output, results = smoke_results
    result = results[backend]
    verdicts = [t["verdict"] for t in result["targets"]]
    if backend in gpu_report.TIME_LIMITS:
        # Every target has its cases in the smoke run; memory only on JAX.
        measured = [v for v in verdicts if v in ("PASS", "FAIL")]
        assert len(measured) >= 7
    else:
        assert verdicts == ["N/A (no targets set)"]
    slug = result["info"]["device"]["slug"]
    table = (output / f"gpu_{slug}_{backend}.md").read_text()
    assert "| map | batch | C | policy |" in table
    assert "Targets (`benchmarks/common/targets.py` gives each reason):" in (
        table)
    assert "cases checked, 0 FAIL (errors included)." in table
    assert f"### {backend} on" in (output / f"gpu_{slug}.md").read_text()


def test_no_case_starts_after_the_budget(tmp_path):
    command = [
        sys.executable, str(BENCHMARKS / "gpu.py"), "--smoke", "--budget",
        "0", "--backends", INSTALLED[0], "--output-dir", str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.glob("gpu_*.json")
    result = json.loads(path.read_text())
    assert result["records"] == []
    assert result["stopped"]["reason"] == "budget"
    assert "Budget reached" in path.with_suffix(".md").read_text()

