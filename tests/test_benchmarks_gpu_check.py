"""The GPU benchmark's checker (`benchmarks/gpu/gpu_check.py`): a wrong kernel
or a wrong output prints FAIL, the right ones do not; the float32
reference, the expected kernel and the tolerances."""

import pathlib
import sys

import keras
import numpy as np
import pytest
from helpers import BACKEND
from reference import reference_self_attention

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path[:0] = [str(BENCHMARKS / "gpu"), str(BENCHMARKS / "common")]

import gpu_cases  # noqa: E402
import gpu_check  # noqa: E402
import gpu_measure  # noqa: E402
import gpu_report  # noqa: E402

pytestmark = pytest.mark.once

CPU = {"name": "cpu", "gpu": False}
H200 = {"name": "NVIDIA H200", "gpu": True, "compute_capability": "9.0",
        "float32_matmul": "float32", "float32_cudnn": "TF32"}
SMALL = (8, 2, 32)


@pytest.fixture(autouse=True)
def _on_the_cpu():
    """Every layer here runs on the CPU, which the checks describe
    (`CPU`), also where Keras' default device is a GPU: a GPU-run layer
    runs that GPU's kernels, which the CPU's rule does not expect."""
    with keras.device("cpu:0"):
        yield


def _built(case, policy="float32", shape=SMALL):
    """A benchmark case's layer, called once, and its input (conftest
    resets the global policy after the test)."""
    keras.config.set_dtype_policy(policy)
    layer, inputs = gpu_cases.build(case, shape)
    layer(inputs)
    return layer, inputs


def _checked(layer, inputs, kernel, case, policy="float32"):
    """The record the worker would write for this check."""
    size, batch, channels = SMALL
    return {"kind": "case", "size": size, "batch": batch,
            "channels": channels, "policy": policy, "case": case,
            "status": "ok", "median_ms": 1.0, "working_bytes": None,
            **gpu_check.check_case(layer, inputs, kernel, case, BACKEND,
                                   CPU, SMALL, policy)}


def test_reference_rows_match_the_suites_reference():
    layer, inputs = _built("dense")
    expected, _ = reference_self_attention(layer, inputs)
    queries = gpu_check.sample_queries(64, count=10)
    assert len(set(queries)) == 10
    rows = gpu_check.reference_rows(
        gpu_check.attention_weights(layer), inputs, queries
    )
    np.testing.assert_allclose(
        rows, expected.reshape(2, 64, 32)[:, queries], rtol=1e-9, atol=1e-12
    )


def test_checker_passes_the_kernel_and_output_the_layer_ran():
    layer, inputs = _built("chunked")
    record = _checked(layer, inputs, layer.last_kernel, "chunked")
    assert record["verdict"] == "PASS" and record["problems"] == []
    assert record["kernel"] == {"implementation": "chunked",
                                "chunk_size": 64}
    assert record["relative_error"] < 1e-5
    line = gpu_report.describe(record)
    assert "chunked[64]" in line and "FAIL" not in line


def test_checker_fails_a_wrong_kernel():
    layer, inputs = _built("chunked")
    ran = layer.last_kernel
    wrong = ran._replace(implementation="dense", blocks=None)
    record = _checked(layer, inputs, wrong, "chunked")
    assert record["verdict"] == "FAIL"
    assert record["problems"] == ["ran dense, expected chunked[64]"]
    assert "FAIL: ran dense, expected chunked[64]" in gpu_report.describe(
        record
    )
    # The right kernel with another block size fails too.
    record = _checked(layer, inputs, ran._replace(
        blocks=ran.blocks._replace(chunk_size=8)), "chunked")
    assert record["problems"] == ["ran chunked[8], expected chunked[64]"]
    # A layer that reports no kernel at all.
    assert _checked(layer, inputs, None, "chunked")["verdict"] == "FAIL"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_checker_fails_a_wrong_output(monkeypatch, policy):
    layer, inputs = _built("auto", policy)
    kernel = layer.last_kernel
    assert _checked(layer, inputs, kernel, "auto", policy)["verdict"] == (
        "PASS"
    )
    right = gpu_check.forward(layer, inputs, BACKEND)

    def half_the_attention(layer, inputs, backend):
        return inputs + 0.5 * (right - inputs)

    monkeypatch.setattr(gpu_check, "forward", half_the_attention)
    record = _checked(layer, inputs, kernel, "auto", policy)
    assert record["verdict"] == "FAIL"
    assert 0.4 < record["relative_error"] < 0.6
    assert record["problems"][0].startswith("error ")
    assert "FAIL: error" in gpu_report.describe(record)
    # No attention term at all (a kernel returning zeros): off by 1.
    monkeypatch.setattr(gpu_check, "forward", lambda layer, x, _: x)
    record = _checked(layer, inputs, kernel, "auto", policy)
    assert record["verdict"] == "FAIL"
    assert record["relative_error"] == pytest.approx(1.0)
    lines = gpu_report.check_lines({"records": [record]})
    assert lines[0] == "- 1 cases checked, 1 FAIL (errors included)."
    assert lines[1].startswith("- FAIL 8x8 b2 C32 " + policy + " auto: ")


@pytest.mark.parametrize("error, verdict", [
    (RuntimeError("CUDA out of memory. Tried to allocate"), "NOT CHECKED"),
    (ValueError("shapes do not match"), "FAIL"),
])
def test_a_check_that_raises_keeps_the_timing(monkeypatch, error, verdict):
    def raising(*args):
        raise error

    monkeypatch.setattr(gpu_check, "check_case", raising)
    spec = {"steps": 2, "max_case_seconds": 15.0}
    record = gpu_measure.run_case(BACKEND, CPU, SMALL, "float32", "dense",
                                  spec)
    assert record["status"] == "ok" and record["median_ms"] > 0
    assert record["verdict"] == verdict
    assert record["problems"] == [
        f"check raised {type(error).__name__}: {error}"]
    line = gpu_report.check_lines({"records": [record]})[1]
    assert line.startswith(f"- {verdict} 8x8 b2 C32 float32 dense: ")


def test_expected_kernel_on_a_gpu():
    expected = gpu_check.expected_kernel
    assert expected("naive", "torch", H200, (128, 8, 64), "float32") is None
    # Mixed precision on torch and JAX: the flash kernel.
    for backend in ("torch", "jax"):
        assert expected("auto", backend, H200, (128, 8, 64),
                        "mixed_bfloat16") == {"implementation": "fused",
                                              "chunk_size": None}
    # float32: dense while the logits fit, then torch fused, JAX chunked
    # with GPU-sized blocks (MEASURED-H200: 1024 queries at 128x128 b8).
    assert expected("auto", "torch", H200, (32, 32, 256), "float32") == {
        "implementation": "dense", "chunk_size": None}
    assert expected("auto", "torch", H200, (128, 8, 64), "float32") == {
        "implementation": "fused", "chunk_size": None}
    assert expected("auto", "jax", H200, (128, 8, 64), "float32") == {
        "implementation": "chunked", "chunk_size": 1024}
    assert expected("chunked", "jax", CPU, (8, 4, 32), "float32") == {
        "implementation": "chunked", "chunk_size": 64}


def test_tolerance_follows_the_float32_matmul_precision():
    tolerance = gpu_check.tolerance
    assert tolerance("float32", CPU, "naive") == 1e-3
    assert tolerance("float32", H200, "auto") == 1e-3
    # torch's naive block runs cuDNN convolutions, TF32 by default.
    assert tolerance("float32", H200, "naive") == 0.05
    jax_gpu = {"gpu": True, "float32_matmul": "default"}
    assert tolerance("float32", jax_gpu, "auto") == 0.05
    assert tolerance("mixed_bfloat16", CPU, "auto") == 0.2
    assert tolerance("mixed_float16", H200, "dense") == 0.05
