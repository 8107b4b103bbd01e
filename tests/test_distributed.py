"""Data-parallel training on Keras' own engines matches one device.

`examples/distributed_training.py` trains the same model from the same
weights on the same batches on one device and data-parallel on two logical
CPU devices (`tf.distribute.MirroredStrategy`, JAX's
`keras.distribution.DataParallel`). Devices are fixed when a backend starts,
so each backend runs in a fresh subprocess that picks its own backend.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

EXAMPLE = (
    pathlib.Path(__file__).resolve().parents[1]
    / "examples"
    / "distributed_training.py"
)
ENGINES = ("tensorflow", "jax")
STEPS = 8  # 32 samples / global batch 8 x 2 epochs
# Replicas sum their gradients in a different order than one device does,
# so losses agree to float32 rounding, not bit for bit (measured on CPU:
# 3e-7 relative for losses, 6e-8 for weights). The tolerances leave room for
# other CPUs; summing the replicas' gradients instead of averaging them (a
# doubled step) changes the losses by up to 20%.
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-5


@pytest.fixture(scope="module")
def results():
    """Runs the example once per engine, both subprocesses at once."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    processes = {
        backend: subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--backend", backend],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for backend in ENGINES
        if importlib.util.find_spec(backend) is not None
    }
    outputs = {}
    for backend, process in processes.items():
        # Generous: a hang, not a slow (loaded) machine, should fail.
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-3000:]
        outputs[backend] = json.loads(stdout.strip().splitlines()[-1])
    return outputs


def _engine_results(results, backend):
    if backend not in results:
        pytest.skip(f"{backend} is not installed")
    return results[backend]


@pytest.mark.once
@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("config", ["plain", "spectral_norm"])
def test_data_parallel_matches_single_device(results, backend, config):
    run = _engine_results(results, backend)
    assert run["backend"] == backend
    assert run["replicas"] == 2
    single = run[config]["single"]
    parallel = run[config]["parallel"]
    assert len(single) == len(parallel) == STEPS
    assert np.isfinite(single).all()
    np.testing.assert_allclose(parallel, single, rtol=LOSS_RTOL)
    # Training moved the weights, and both runs moved them the same way
    # (with spectral norm: the power-iteration vectors too).
    assert run[config]["max_weight_change"] > 1e-2
    assert run[config]["max_weight_difference"] < WEIGHT_ATOL
