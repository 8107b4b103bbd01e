"""Training across processes: 2 processes on localhost against 1 process.

The examples run as separate processes, as they would on separate hosts:
`multiprocess_jax.py` (JAX, `keras.distribution`), `torch_ddp.py` (torch
`DistributedDataParallel` around a Keras model) and
`multiworker_tensorflow.py` (`MultiWorkerMirroredStrategy`, custom loop).
Two processes on the same global batches must end where one process ends;
a `.keras` file written by rank 0 must load on every backend; a worker
whose coordinator never answers must fail within its timeout.

Every job starts at once in the background (most of their time is spent
importing and waiting on each other), on free ports, each under a timeout
that fails the test instead of hanging.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.once

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
STEPS = 8  # 32 samples, global batch 8, 2 epochs
# Measured on CPU: two processes agree with each other exactly and with one
# process to 3e-8 (weights) and 5e-7 (relative loss); they sum gradients
# in another order than one process does.
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-5
RUN_TIMEOUT_S = 240
# Seconds a worker waits for an absent coordinator, and the slack the
# issue allows on top (start-up, shutting down).
JOIN_TIMEOUT_S = 15
FAIL_SLACK_S = 30


def free_ports(count):
    """`count` distinct ports that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Job:
    """A subprocess run to completion in a background thread, timed."""

    def __init__(self, command, timeout=RUN_TIMEOUT_S, **env):
        self.command = command
        self.timeout = timeout
        self.env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
        self.env.update(env)
        self.completed = None
        self.seconds = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        start = time.monotonic()
        try:
            self.completed = subprocess.run(
                self.command,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,  # kills the child when exceeded
            )
        except subprocess.TimeoutExpired:
            pass
        self.seconds = time.monotonic() - start

    def result(self):
        """The completed process; fails the test on a timeout."""
        self._thread.join()
        if self.completed is None:
            pytest.fail(f"timed out after {self.timeout} s: {self.command}")
        return self.completed

    def succeeded(self):
        completed = self.result()
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed


def example(name, **flags):
    """The command running `examples/<name>` with `--flag value` flags."""
    command = [sys.executable, str(EXAMPLES / name)]
    for flag, value in flags.items():
        command += [f"--{flag.replace('_', '-')}", str(value)]
    return command


def start_jax(out):
    (port,) = free_ports(1)
    address = f"localhost:{port}"
    jobs = [
        Job(
            example(
                "multiprocess_jax.py",
                coordinator=address,
                num_processes=2,
                process_id=process_id,
                init_timeout=120,
                output_dir=out / "two",
            )
        )
        for process_id in (0, 1)
    ]
    one = example("multiprocess_jax.py", output_dir=out / "one")
    return jobs + [Job(one)]


def start_torch(out):
    jobs = []
    for world_size, port in zip((2, 1), free_ports(2), strict=True):
        output = out / ("two" if world_size == 2 else "one")
        for rank in range(world_size):
            flags = {"init_timeout": 120}
            if rank == 0:
                flags["output_dir"] = output
            command = example("torch_ddp.py", **flags)
            jobs.append(
                Job(
                    command,
                    MASTER_ADDR="localhost",
                    MASTER_PORT=str(port),
                    RANK=str(rank),
                    WORLD_SIZE=str(world_size),
                )
            )
    return jobs


def start_tensorflow(out):
    workers = ",".join(f"localhost:{port}" for port in free_ports(2))
    jobs = [
        Job(
            example(
                "multiworker_tensorflow.py",
                workers=workers,
                index=index,
                output_dir=out / "two",
            )
        )
        for index in (0, 1)
    ]
    one = example("multiworker_tensorflow.py", output_dir=out / "one")
    return jobs + [Job(one)]


def start_unreachable(address):
    """Workers with rank/process id 1 waiting for a coordinator at
    `address`, where nothing listens."""
    host, port = address.split(":")
    limit = JOIN_TIMEOUT_S + FAIL_SLACK_S + 60  # the test checks the time
    return {
        "jax": Job(
            example(
                "multiprocess_jax.py",
                coordinator=address,
                num_processes=2,
                process_id=1,
                init_timeout=JOIN_TIMEOUT_S,
            ),
            timeout=limit,
        ),
        "torch": Job(
            example("torch_ddp.py", init_timeout=JOIN_TIMEOUT_S),
            timeout=limit,
            MASTER_ADDR=host,
            MASTER_PORT=port,
            RANK="1",
            WORLD_SIZE="2",
        ),
    }


@pytest.fixture(scope="module")
def unreachable():
    """Workers waiting for an absent coordinator, started with the JAX
    runs (not with all jobs: start-up on a loaded machine counts against
    their time limit)."""
    # Bound but not listening: connections are refused, and no other job
    # can be given this port while the tests run.
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        address = f"localhost:{sock.getsockname()[1]}"
        yield address, start_unreachable(address)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def jax_runs(out, unreachable):
    return start_jax(out / "jax")


@pytest.fixture(scope="module")
def torch_runs(out):
    return start_torch(out / "torch")


@pytest.fixture(scope="module")
def tensorflow_runs(out):
    return start_tensorflow(out / "tensorflow")


def read_json(path):
    return json.loads(path.read_text())


def assert_same_training(runs, single):
    """Each run in `runs` has the single run's step losses and final
    weights, the spectral-norm vectors `u` included."""
    assert len(single["losses"]) == STEPS
    assert np.isfinite(single["losses"]).all()
    u_paths = [path for path in single["weights"] if path.endswith("/u")]
    assert len(u_paths) == 4  # query, key, value and output projections
    for run in runs:
        np.testing.assert_allclose(
            run["losses"], single["losses"], rtol=LOSS_RTOL
        )
        assert sorted(run["weights"]) == sorted(single["weights"])
        for path, value in single["weights"].items():
            np.testing.assert_allclose(
                run["weights"][path],
                value,
                rtol=0,
                atol=WEIGHT_ATOL,
                err_msg=path,
            )
    # Training moved the weights, and gamma and every `u` by more than the
    # tolerance: a run that left one unchanged would fail the comparison.
    changes = {
        path: np.abs(np.subtract(value, single["initial_weights"][path]))
        for path, value in single["weights"].items()
    }
    assert max(change.max() for change in changes.values()) > 1e-2
    for path in [*u_paths, "attention/gamma"]:
        assert changes[path].max() > 10 * WEIGHT_ATOL, path


def test_jax_two_processes_match_one(jax_runs, out):
    for job in jax_runs:
        job.succeeded()
    out = out / "jax"
    two = [read_json(out / "two" / f"process_{i}.json") for i in (0, 1)]
    single = read_json(out / "one" / "process_0.json")
    assert [run["process_id"] for run in two] == [0, 1]
    assert all(run["num_processes"] == 2 for run in two)
    assert all(run["num_devices"] == 2 for run in two)
    assert single["num_devices"] == 1
    assert_same_training(two, single)


LOAD_AND_PREDICT = """
import json
import sys
import keras
import numpy as np
import conv_self_attention  # registers the layer classes with Keras
model = keras.saving.load_model(sys.argv[1])
expected = np.load(sys.argv[2])
outputs = keras.ops.convert_to_numpy(model(expected["inputs"]))
print(json.dumps({
    "backend": keras.backend.backend(),
    "max_difference": float(np.abs(outputs - expected["outputs"]).max()),
}))
"""


@pytest.fixture(scope="module")
def loaded_on_every_backend(jax_runs, out):
    """Loads rank 0's `.keras` file on each backend, all at once."""
    for job in jax_runs:
        job.succeeded()
    out = out / "jax" / "two"
    command = [
        sys.executable,
        "-c",
        LOAD_AND_PREDICT,
        str(out / "model.keras"),
        str(out / "outputs.npz"),
    ]
    loads = {
        backend: Job(command, KERAS_BACKEND=backend)
        for backend in ("tensorflow", "jax", "torch")
    }
    return {
        backend: json.loads(job.succeeded().stdout.splitlines()[-1])
        for backend, job in loads.items()
    }


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_rank0_keras_file_loads_on_every_backend(
    loaded_on_every_backend, backend
):
    loaded = loaded_on_every_backend[backend]
    assert loaded["backend"] == backend
    assert loaded["max_difference"] < 1e-5


@pytest.mark.parametrize("engine", ["jax", "torch"])
def test_unreachable_coordinator_fails_fast(unreachable, engine):
    address, jobs = unreachable
    completed = jobs[engine].result()
    assert completed.returncode != 0
    assert jobs[engine].seconds < JOIN_TIMEOUT_S + FAIL_SLACK_S
    assert address in completed.stderr


def test_torch_ddp_two_processes_match_one(torch_runs, out):
    for job in torch_runs:
        job.succeeded()
    out = out / "torch"
    two = read_json(out / "two" / "result.json")
    single = read_json(out / "one" / "result.json")
    assert (two["world_size"], single["world_size"]) == (2, 1)
    assert_same_training([two], single)


LOAD_STATE_DICT = """
import json
import sys
sys.path.insert(0, sys.argv[1])
import keras
import torch
import toy_task
# Another model first: auto-generated layer names would now differ from
# the saving process's; the explicit names do not.
toy_task.build_model(compile=False)
keras.layers.Dense(3)(keras.Input((2,)))
model = toy_task.build_model(compile=False)
model.load_state_dict(torch.load(sys.argv[2]), strict=True)
print(json.dumps(toy_task.as_lists(toy_task.named_weights(model))))
"""


def test_torch_state_dict_loads_into_an_independently_built_model(
    torch_runs, out
):
    for job in torch_runs:
        job.succeeded()
    out = out / "torch" / "two"
    command = [
        sys.executable,
        "-c",
        LOAD_STATE_DICT,
        str(EXAMPLES),
        str(out / "weights.pt"),
    ]
    loaded = json.loads(
        Job(command, KERAS_BACKEND="torch").succeeded().stdout.splitlines()[-1]
    )
    trained = read_json(out / "result.json")["weights"]
    assert sorted(loaded) == sorted(trained)
    for path, value in trained.items():
        np.testing.assert_array_equal(loaded[path], value, err_msg=path)


def test_tensorflow_two_workers_match_one(tensorflow_runs, out):
    for job in tensorflow_runs:
        job.succeeded()
    out = out / "tensorflow"
    two = [read_json(out / "two" / f"worker_{i}.json") for i in (0, 1)]
    single = read_json(out / "one" / "worker_0.json")
    assert [run["replicas"] for run in two] == [2, 2]
    assert single["replicas"] == 1
    assert_same_training(two, single)
