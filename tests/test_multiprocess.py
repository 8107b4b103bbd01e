"""Training across processes on localhost, against 1 process.

The examples run as separate processes, as they would on separate hosts,
from the command lines the documentation gives for one machine:
`multiprocess_jax.py` (JAX, `keras.distribution`, 2 processes with 2 CPU
devices each), `torch_ddp.py` (torch `DistributedDataParallel` around a
Keras model, `torchrun` with 3 processes) and `multiworker_tensorflow.py`
(`MultiWorkerMirroredStrategy`, custom loop, 2 workers). They must end where
one process ends on the same global batches; a `.keras` file written by
process 0 must load on every backend; a worker whose coordinator never
answers must give up, with its own message, after its timeout.

Every job starts at once in the background (most of their time is spent
importing and waiting on each other), under a deadline sized for a loaded
2-core machine that fails the test instead of hanging. Ports are reserved
for as long as the jobs run (see `reserved_ports`).
"""

import json
import pathlib
import re
import shlex
import socket
import sys

import numpy as np
import pytest
from background_jobs import Job
from background_jobs import reserved_ports

pytestmark = pytest.mark.once

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "guide" / "distributed.md"
STEPS = 8  # 4 global batches per epoch, 2 epochs
# Measured on CPU: processes agree with each other exactly and with one
# process to 6e-8 (weights) and 5e-7 (relative loss); they sum gradients
# in another order than one process does.
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-5
# Seconds a worker waits for an absent coordinator, and what the test
# allows on top for starting Python and NumPy on a loaded machine (the
# worker probes the coordinator before importing a framework).
JOIN_TIMEOUT_S = 15
START_SLACK_S = 30
# Every run on CPUs, as documented, also on a GPU host: there JAX would put
# both processes on its one GPU and torch 3 ranks on one (which the
# example refuses), and the tolerances above are CPU measurements.
ON_CPUS = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
def documented_commands(prefix):
    """Every command line in the shell blocks of the guide page
    (docs/guide/distributed.md) that starts with `prefix`, split as the
    shell would (comments and `&` dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(prefix):
                words = shlex.split(line, comments=True)
                commands.append([w for w in words if w != "&"])
    assert commands, f"no documented command starts with {prefix!r}"
    return commands


def flag(command, name):
    return command[command.index(name) + 1]


def start_jax(out, port):
    """The documented one-machine JAX run, and one process alone."""
    commands = documented_commands("python examples/multiprocess_jax.py")
    two = [c for c in commands if "--coordinator" in c and "--cpu-devices" in c]
    assert len(two) == 2, two
    jobs = []
    for command in two:
        command = [sys.executable, *command[1:], "--output-dir", out / "two"]
        command[command.index("--coordinator") + 1] = f"localhost:{port}"
        jobs.append(Job(command, cwd=ROOT, **ON_CPUS))
    batch = flag(two[0], "--global-batch")
    one = [sys.executable, EXAMPLES / "multiprocess_jax.py", "--global-batch"]
    jobs.append(Job([*one, batch, "--output-dir", out / "one"], **ON_CPUS))
    return jobs


def start_torch(out):
    """The documented one-host `torchrun` line, and the same with 1
    process."""
    (command,) = documented_commands("torchrun --standalone")
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    jobs = {}
    for name, processes in (("many", flag(command, "--nproc-per-node")),
                            ("one", "1")):
        run = [*torchrun, *command[1:], "--output-dir", out / name]
        run[run.index("--nproc-per-node") + 1] = processes
        jobs[name] = Job(run, cwd=ROOT, **ON_CPUS)
    return jobs


def start_tensorflow(out, ports):
    workers = ",".join(f"localhost:{port}" for port in ports)
    script = [sys.executable, EXAMPLES / "multiworker_tensorflow.py"]
    jobs = [
        Job([*script, "--workers", workers, "--index", index,
             "--output-dir", out / "two"], **ON_CPUS)
        for index in ("0", "1")
    ]
    return jobs + [Job([*script, "--output-dir", out / "one"], **ON_CPUS)]


def start_unreachable(address):
    """Workers with rank/process id 1 waiting for a coordinator at
    `address`, where nothing listens."""
    host, port = address.split(":")
    jax = [sys.executable, EXAMPLES / "multiprocess_jax.py",
           "--coordinator", address, "--num-processes", "2",
           "--process-id", "1", "--init-timeout", JOIN_TIMEOUT_S]
    torch = [sys.executable, EXAMPLES / "torch_ddp.py",
             "--init-timeout", JOIN_TIMEOUT_S]
    return {
        "jax": Job(jax),
        "torch": Job(torch, MASTER_ADDR=host, MASTER_PORT=port, RANK="1",
                     WORLD_SIZE="2"),
    }


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def unreachable():
    # Bound without SO_REUSEADDR and not listening: connections are
    # refused, and nothing else can take the port while the tests run.
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        address = f"localhost:{sock.getsockname()[1]}"
        yield address, start_unreachable(address)


@pytest.fixture(scope="module")
def jax_runs(out, unreachable):
    with reserved_ports(1) as (port,):
        jobs = start_jax(out / "jax", port)
        yield jobs
        for job in jobs:
            job.wait()  # the port stays reserved until every job ended


@pytest.fixture(scope="module")
def torch_runs(out):
    return start_torch(out / "torch")


@pytest.fixture(scope="module")
def tensorflow_runs(out):
    with reserved_ports(2) as ports:
        jobs = start_tensorflow(out / "tensorflow", ports)
        yield jobs
        for job in jobs:
            job.wait()


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


def test_jax_two_processes_with_two_devices_match_one(jax_runs, out):
    for job in jax_runs:
        job.succeeded()
    out = out / "jax"
    two = [read_json(out / "two" / f"process_{i}.json") for i in (0, 1)]
    single = read_json(out / "one" / "process_0.json")
    assert [run["process_id"] for run in two] == [0, 1]
    assert all(run["num_processes"] == 2 for run in two)
    assert all(run["num_devices"] == 4 for run in two)
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
    """Loads process 0's `.keras` file on each backend, all at once."""
    for job in jax_runs:
        job.succeeded()
    out = out / "jax" / "two"
    command = [sys.executable, "-c", LOAD_AND_PREDICT, out / "model.keras",
               out / "outputs.npz"]
    loads = {
        backend: Job(command, KERAS_BACKEND=backend, **ON_CPUS)
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


def assert_gave_up(stderr, address, timeout):
    """The worker's own last words: it waited `timeout` s for `address`."""
    lines = stderr.strip().splitlines()
    assert lines, "the worker printed nothing"
    expected = f"no coordinator answered at {address} within {timeout} s"
    assert expected in lines[-1], lines[-1]


def test_gave_up_check_fails_without_the_workers_message():
    # What a worker that only announced the address, then was aborted by
    # JAX, would leave; and a message for another address.
    banner = (
        "process 1: joining 2 processes at coordinator localhost:1234 "
        "(timeout 15 s)\nF1201 coordination_service_agent.cc] Terminating "
        "process because the JAX distributed service detected fatal errors."
    )
    with pytest.raises(AssertionError):
        assert_gave_up(banner, "localhost:1234", 15)
    other = "process 1: no coordinator answered at localhost:1 within 15 s"
    with pytest.raises(AssertionError):
        assert_gave_up(other, "localhost:1234", 15)
    assert_gave_up(other, "localhost:1", 15)


@pytest.mark.parametrize("engine", ["jax", "torch"])
def test_unreachable_coordinator_fails_fast(unreachable, engine):
    address, jobs = unreachable
    completed = jobs[engine].result()
    assert completed.returncode != 0
    assert_gave_up(completed.stderr, address, JOIN_TIMEOUT_S)
    # It waited for its timeout, then stopped.
    seconds = jobs[engine].seconds
    assert JOIN_TIMEOUT_S <= seconds < JOIN_TIMEOUT_S + START_SLACK_S


def test_torch_ddp_three_processes_match_one(torch_runs, out):
    for job in torch_runs.values():
        job.succeeded()
    out = out / "torch"
    many = read_json(out / "many" / "result.json")
    single = read_json(out / "one" / "result.json")
    assert (many["world_size"], single["world_size"]) == (3, 1)
    assert_same_training([many], single)


# Runs the torch example as `__main__`, torch seeing one (fake) GPU.
WITH_ONE_GPU = """
import os
import runpy
import sys
import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_torch_more_processes_than_gpus_stop_before_joining():
    """3 processes on a host whose torch sees 1 GPU (the documented
    one-host line on a one-GPU machine): one line saying what to do, not
    3 ranks on `cuda:0..2`."""
    command = [sys.executable, "-c", WITH_ONE_GPU, EXAMPLES / "torch_ddp.py",
               "--global-batch", "12"]
    completed = Job(command, RANK="0", LOCAL_RANK="0", WORLD_SIZE="3",
                    LOCAL_WORLD_SIZE="3", MASTER_ADDR="localhost",
                    MASTER_PORT="1").result()
    assert completed.returncode != 0
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith(
        "rank 0: 3 processes on this host but 1 GPU(s) visible;"
    ), line
    assert "--nproc-per-node 1" in line and "CUDA_VISIBLE_DEVICES=" in line


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
    for job in torch_runs.values():
        job.succeeded()
    out = out / "torch" / "many"
    command = [sys.executable, "-c", LOAD_STATE_DICT, EXAMPLES,
               out / "weights.pt"]
    loaded = Job(command, KERAS_BACKEND="torch", **ON_CPUS).succeeded()
    loaded = json.loads(loaded.stdout.splitlines()[-1])
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


# Runs an example as `__main__`; then says which frameworks it imported.
RUN_AND_LIST_FRAMEWORKS = """
import os
import runpy
import sys
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python script` does
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    loaded = [m for m in ("jax", "torch", "tensorflow") if m in sys.modules]
    print("frameworks:", loaded)
"""


@pytest.mark.parametrize(
    "script, flags, env, named",
    [
        ("multiprocess_jax.py", "--coordinator localhost:1234 "
         "--num-processes 2 --process-id 0 --global-batch 9", {},
         "--global-batch 9"),
        ("multiprocess_jax.py", "--coordinator localhost --num-processes 2 "
         "--process-id 1", {}, "--coordinator localhost"),
        ("multiprocess_jax.py", "--coordinator localhost:1234 "
         "--num-processes 2 --process-id 2", {}, "--process-id 2"),
        ("torch_ddp.py", "--global-batch 8", {"WORLD_SIZE": "3"},
         "--global-batch 8"),
        ("multiworker_tensorflow.py", "--workers a:1,b:1,c:1 --index 0 "
         "--global-batch 8", {}, "--global-batch 8"),
    ],
)
def test_bad_input_stops_with_one_line_before_any_framework(
    script, flags, env, named
):
    command = [sys.executable, "-c", RUN_AND_LIST_FRAMEWORKS,
               EXAMPLES / script, *flags.split()]
    completed = Job(command, **env).result()
    assert completed.returncode != 0
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith(named + " "), line
    assert "frameworks: []" in completed.stdout
