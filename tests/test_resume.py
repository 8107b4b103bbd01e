"""A `fit` killed mid-epoch resumes with `BackupAndRestore` and ends where
an uninterrupted run ends.

`resume_run.py` runs in a subprocess on this pass's backend (it SIGKILLs
itself in epoch 1, batch 3, the first time), is started again, and its
final weights (gamma and the spectral-norm vectors included) and optimizer
state are compared with an uninterrupted `fit` of the same model in this
process. Runs on every backend.
"""

import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import resume_run

SCRIPT = pathlib.Path(__file__).resolve().parent / "resume_run.py"
KILL_EPOCH = 1
KILL_BATCH = 3
# A run taking longer has hung: each takes well under a minute alone, and
# several times that beside other jobs on a loaded 2-core machine.
TIMEOUT_S = 600


def run_script(tmp_path):
    """Starts `resume_run.py` once; returns the completed process."""
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    command = [
        sys.executable,
        str(SCRIPT),
        "--backup-dir",
        str(tmp_path / "backup"),
        "--output",
        str(tmp_path / "final.npz"),
        "--epoch-log",
        str(tmp_path / "epochs.log"),
        "--kill-at",
        str(KILL_EPOCH),
        str(KILL_BATCH),
        "--killed-marker",
        str(tmp_path / "killed"),
    ]
    # A hung child fails the test through `TimeoutExpired`.
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def epochs_begun(log_path):
    """`{pid: [epochs begun]}` from the runs' epoch log."""
    runs = {}
    for line in log_path.read_text().splitlines():
        pid, epoch = line.split()
        runs.setdefault(pid, []).append(int(epoch))
    return list(runs.values())


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    killed = run_script(tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (tmp_path / "backup" / "latest.weights.h5").exists()
    assert not (tmp_path / "final.npz").exists()

    resumed = run_script(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The first run began epochs 0 and 1 and died in 1; the second began
    # at the killed epoch (repeating it whole), not at 0.
    first, second = epochs_begun(tmp_path / "epochs.log")
    assert first == [0, KILL_EPOCH]
    assert second == list(range(KILL_EPOCH, resume_run.EPOCHS))

    model = resume_run.build_model()
    initial = resume_run.final_state(model)
    resume_run.fit(model)
    expected = resume_run.final_state(model)
    with np.load(tmp_path / "final.npz") as saved:
        actual = dict(saved)
    assert sorted(actual) == sorted(expected)
    assert any(key.endswith("/u") for key in expected)
    assert "model:attention/gamma" in expected
    for key, value in expected.items():
        np.testing.assert_allclose(
            actual[key], value, rtol=1e-5, atol=1e-6, err_msg=key
        )
    # Training changed what is compared: gamma, every u, the kernels.
    for key in initial:
        if key.startswith("model:"):
            assert not np.allclose(initial[key], expected[key]), key
