"""`benchmarks/gpu/run_gpu.sh`, the one call on a GPU machine: its dry run on
this machine (`--smoke`: the same steps in the same order, preflight
included), the one-line stops of its preflight, a step ended at its limit
(SIGINT: JUnit kept), and the pure parts of the preflight and the
summary. Stand-ins: a payload whose `site/` holds a module that fails to
import for a missing pytest, hypothesis or Keras, and
`CUDA_VISIBLE_DEVICES=""` for a machine whose backends see no GPU."""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tarfile
from importlib import metadata

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks" / "gpu"
RUN_GPU = BENCHMARKS / "run_gpu.sh"
sys.path[:0] = [str(BENCHMARKS), str(ROOT / "benchmarks" / "common")]

import gpu  # noqa: E402
import gpu_host  # noqa: E402
import gpu_payload  # noqa: E402
import gpu_preflight  # noqa: E402
import gpu_summary  # noqa: E402

pytestmark = pytest.mark.once

# The dry run's own time budget: run_gpu.sh's clock (--seconds, its
# default) and, with a minute more, this test's limit on the whole call.
SMOKE_SECONDS = 400


def _run(arguments, tmp_path, timeout, **env):
    return subprocess.run(
        [str(RUN_GPU), *arguments], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
        env=dict(os.environ, PYTHON=sys.executable, **env),
    )


def _fake_payload(tmp_path, missing=None):
    """A payload folder as prepare_gpu_payload.sh leaves it, empty but for
    a module named `missing` that fails to import, as a missing one does."""
    payload = tmp_path / "payload"
    (payload / "site").mkdir(parents=True)
    (payload / "MANIFEST.txt").write_text("a stand-in\n")
    if missing:
        (payload / "site" / f"{missing}.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{missing}'\", "
            f"name={missing!r})\n"
        )
    return payload


def test_smoke_runs_every_step_in_order(tmp_path):
    """Preflight, the benchmark's cases, the GPU-specific tests: each ran
    and passed, counted from its JUnit XML or JSON results, and `--pack`
    leaves four files. One test (a CPU variant) and one tiny case keep it
    short; without a payload this environment's packages are used."""
    output = tmp_path / "out"
    done = _run(
        ["--smoke", "--backends", "jax", "--seconds", str(SMOKE_SECONDS),
         "--payload", str(tmp_path / "none"), "--output-dir", str(output),
         "--pack", "--", "--implementations", "auto", "--policies", "float32",
         "--shapes", "8x2x16"],
        tmp_path, SMOKE_SECONDS + 60,
        GPU_TESTS="tests/test_gpu.py::test_auto_runs_the_devices_kernel_"
        "under_mixed_precision[cpu-mixed_bfloat16]",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    lines = (output / "summary.txt").read_text().splitlines()
    steps = [line.split(":")[0] for line in lines]
    assert steps == ["preflight", "benchmark jax", "gpu_tests jax",
                     "total"]
    for line in lines[1:3]:
        assert ", exit 0, timed out: no; " in line, line
    assert lines[1].endswith("1 of 1 cases: 1 passed, 0 failed, 0 not "
                             "checked, 0 out of memory, 0 errors, 0 not "
                             "reached; targets: 1 NOT MEASURED, 1 PASS")
    assert lines[2].endswith("1 passed, 0 failed, 0 errors, 0 skipped")
    preflight = (output / "preflight.log").read_text()
    for word in ("Python 3.", "payload: none", "pytest ", "hypothesis ",
                 "jax ", "jaxlib ", "device: ", "Keras ", "runs: jax"):
        assert word in preflight
    (report,) = output.glob("gpu_*.md")  # the backends' joined report
    assert sorted(p.name for p in output.iterdir()) == sorted(
        ["summary.txt", "preflight.log", report.name, "gpu_run.tar.gz"])
    with tarfile.open(output / "gpu_run.tar.gz") as packed:
        names = packed.getnames()
        for name in ("gpu_tests_jax.xml", "benchmark_jax.log",
                     "summary.txt"):
            assert f"./{name}" in names
        (result,) = [n for n in names if n.endswith("_jax.json")]
        records = json.load(packed.extractfile(result))["records"]
    assert [(r["size"], r["case"], r["verdict"]) for r in records] == [
        (8, "auto", "PASS")]


def test_missing_payload_stops_the_run_in_one_line(tmp_path):
    output = tmp_path / "out"
    done = _run(["--payload", str(tmp_path / "none"), "--output-dir",
                 str(output)], tmp_path, 60)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("run_gpu.sh: no payload in ")
    assert "benchmarks/gpu/prepare_gpu_payload.sh" in line
    assert not output.exists()


@pytest.mark.parametrize("missing", ["pytest", "hypothesis", "keras"])
def test_preflight_stops_in_one_line_when_a_module_is_missing(tmp_path,
                                                              missing):
    output = tmp_path / "out"
    done = _run(["--smoke", "--backends", "jax", "--payload",
                 str(_fake_payload(tmp_path, missing)), "--output-dir",
                 str(output)], tmp_path, 120)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("run_gpu.sh: preflight: ")
    assert f"No module named '{missing}'" in line
    # The payload lacks this Python's compiled wheels: the line says so.
    assert f"no wheels for cp{sys.version_info[0]}{sys.version_info[1]}" in (
        line)
    summary = (output / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("preflight: ran ")
    assert summary[0].endswith(", exit 2") and summary[1] == line
    assert not list(output.glob("benchmark_*")), "a step ran after the stop"


def test_preflight_stops_when_no_backend_sees_a_gpu(tmp_path):
    """Without --smoke, on any host: no GPU is visible. One backend keeps
    it short (both: test_decide_stops_on_keras_or_no_gpu)."""
    output = tmp_path / "out"
    done = _run(["--backends", "jax", "--payload", str(_fake_payload(
        tmp_path)), "--output-dir", str(output)], tmp_path, 120,
        CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "run_gpu.sh: preflight: no backend sees a GPU (jax: no GPU)"
    ]
    log = (output / "preflight.log").read_text()
    assert "jax: not run: no GPU" in log and "device: cpu" in log


def test_a_backend_whose_keras_fails_is_not_run_the_other_goes_on(
        tmp_path):
    """Keras failing to import on torch (a stand-in: a `sitecustomize`
    that refuses Keras' torch backend) costs torch's steps only: both say
    why, JAX is run (its benchmark here finds too little of the short
    `--seconds` left), and the run exits 1 since not every step ran."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(
        "import os, sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'keras.src.backend.torch':\n"
        "            raise ImportError('no Keras on torch here')\n"
        "if os.environ.get('KERAS_BACKEND') == 'torch':\n"
        "    sys.meta_path.insert(0, Refuse())\n")
    output = tmp_path / "out"
    done = _run(["--smoke", "--backends", "torch jax", "--seconds", "60",
                 "--payload", str(tmp_path / "none"), "--output-dir",
                 str(output)], tmp_path, 120, GPU_TESTS="",
                PYTHONPATH=str(fake))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "runs: jax" in (output / "preflight.log").read_text()
    lines = (output / "summary.txt").read_text().splitlines()
    why = "not run: Keras does not import: ImportError: no Keras on torch here"
    assert lines[0].startswith("preflight: ran ") and lines[0].endswith(
        ", exit 0")
    assert lines[1:3] == [f"benchmark torch: {why}", f"gpu_tests torch: {why}"]
    assert lines[3].startswith("benchmark jax: not run: ") and lines[
        3].endswith(" s left")
    assert lines[4:5] == ["gpu_tests: not asked for"]
    assert lines[5].startswith("total: ") and lines[5].endswith(", exit 1")


def test_a_step_at_its_limit_keeps_its_junit_report(tmp_path):
    """SIGINT at the limit: pytest reports what passed and is counted as
    timed out."""
    tests = tmp_path / "test_limit.py"
    tests.write_text("import time\n\ndef test_quick():\n    pass\n\n"
                     "def test_outlives_the_limit():\n    time.sleep(120)\n")
    report = tmp_path / "report.xml"
    # 15 s: time for pytest to start and pass test_quick on a loaded host.
    done = subprocess.run(
        [str(BENCHMARKS / "gpu_step.sh"), "gpu_tests jax", "15",
         str(tmp_path / "log"), "junit", str(report), sys.executable, "-m",
         "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         str(tests)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu_tests jax: ran ")
    assert done.stdout.rstrip().endswith(
        "(limit 15 s), exit 124, timed out: yes; "
        "1 passed, 0 failed, 0 errors, 0 skipped")
    assert "KeyboardInterrupt" in (tmp_path / "log").read_text()


def _probe(backend, gpu):
    return {"backend": backend, "gpu": gpu, "version": "1",
            "device": "gpu" if gpu else "cpu", "keras": "3"}


def test_decide_runs_the_backends_that_see_a_gpu():
    probes = {"torch": _probe("torch", False), "jax": _probe("jax", True)}
    assert gpu_preflight.decide(probes, smoke=False) == (
        ["jax"], {"torch": "no GPU"}, None)
    assert gpu_preflight.decide(probes, smoke=True) == (
        ["torch", "jax"], {}, None)
    probes["torch"] = {"backend": "torch", "backend_error": "ImportError"}
    assert gpu_preflight.decide(probes, smoke=True) == (
        ["jax"], {"torch": "torch does not import"}, None)


def test_decide_stops_only_when_no_backend_can_run():
    probes = {"torch": _probe("torch", False), "jax": _probe("jax", False)}
    run, _, stop = gpu_preflight.decide(probes, smoke=False)
    assert run == [] and stop == "no backend sees a GPU (torch: no GPU; " \
        "jax: no GPU)"
    # Keras failing on one backend loses that backend's numbers only.
    probes["torch"] = {**_probe("torch", True), "keras_error": "OSError: x"}
    probes["jax"] = _probe("jax", True)
    assert gpu_preflight.decide(probes, smoke=False) == (
        ["jax"], {"torch": "Keras does not import: OSError: x"}, None)
    probes["jax"] = {**_probe("jax", True), "keras_error": "ImportError: y"}
    assert gpu_preflight.decide(probes, smoke=False)[2] == (
        "no backend can run (torch: Keras does not import: OSError: x; "
        "jax: Keras does not import: ImportError: y)")


def test_summary_counts_from_junit(tmp_path):
    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testsuite tests="7" failures="1" errors="1" '
        'skipped="2"/></testsuites>')
    assert gpu_summary.line("gpu_tests torch", 1, 30, 60,
                            junit=str(report)) == (
        "gpu_tests torch: ran 30 s (limit 60 s), exit 1, timed out: no; "
        "3 passed, 1 failed, 1 errors, 2 skipped")
    assert gpu_summary.line("device_tests jax", 137, 80, 60,
                            junit=str(tmp_path / "none.xml")).endswith(
        "exit 137, timed out: yes; no JUnit report")


def test_payload_pins_this_environments_versions():
    """Keras, pytest, hypothesis and what they need on CPython 3.11-3.14,
    at the versions installed here, less what torch and JAX bring."""
    pins = gpu_payload.requirements()
    for name in ("keras", "pytest", "hypothesis", "optree", "pluggy",
                 "iniconfig", "sortedcontainers", "rich", "namex"):
        assert pins[name] == metadata.version(name)
    assert not {"numpy", "ml-dtypes", "h5py"} & set(pins)
    # Needed only before 3.11: not carried.
    assert "exceptiongroup" not in pins and "tomli" not in pins


def test_payload_folders_by_wheel_tags():
    assert gpu_payload.target_folder("keras-3.15.1-py3-none-any.whl") == (
        "site")
    assert gpu_payload.target_folder(
        "optree-0.20.0-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28"
        "_x86_64.whl") == "cp314"


def test_benchmark_shapes_argument():
    assert gpu.shape_argument("128x8x64") == (128, 8, 64)
    for bad in ("128x8", "0x8x64", "ax8x64"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad):
            gpu.shape_argument(bad)


class _Distribution:
    def __init__(self, name, version):
        self.metadata, self.version = {"Name": name}, version


@pytest.mark.parametrize("module, distribution, found", [
    (None, ("jax", "0.10.2"), False),
    ("jax_plugins.xla_cuda12", ("jax", "0.10.2"), True),  # conda-forge
    ("jaxlib.cuda", ("jax", "0.10.2"), True),  # source builds
    (None, ("jaxlib", "0.4.30+cuda12.cudnn91"), True),  # older pip wheels
    (None, ("jax_cuda13_plugin", "0.10.2"), True),  # pip, any installer
])
def test_cuda_jax_is_recognised_however_installed(monkeypatch, module,
                                                  distribution, found):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: object() if name == module else None)
    monkeypatch.setattr(metadata, "distributions",
                        lambda: [_Distribution(*distribution)])
    assert gpu_host.jax_has_cuda_plugin() is found
