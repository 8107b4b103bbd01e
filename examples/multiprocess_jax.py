"""Data-parallel training over several processes with JAX and
`keras.distribution`: one process per host, or one per accelerator.

Every process runs this script with the same coordinator address (host and
port of process 0), process count and global batch, and its own process
id, given as flags or in Keras' environment variables
`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID`:

    # on host 0 (the coordinator, 10.0.0.1) and on host 1
    python examples/multiprocess_jax.py --coordinator 10.0.0.1:1234 \\
        --num-processes 2 --process-id 0 --global-batch 64
    python examples/multiprocess_jax.py --coordinator 10.0.0.1:1234 \\
        --num-processes 2 --process-id 1 --global-batch 64

A process uses every accelerator of its host, or those of
`--local-device-ids` (one process per GPU: `--local-device-ids $LOCAL_RANK`);
without accelerators, `--cpu-devices` CPU devices (to try it on one
machine). `keras.distribution.DataParallel` then replicates the model over
the devices of all processes; each process feeds only its own slice of
every global batch (`auto_shard_dataset=False`), and gradients are averaged
across all devices. A process other than 0 first waits up to
`--init-timeout` seconds for the coordinator to accept connections, and
exits with an error naming the address if it does not.

With `--output-dir`, each process writes `process_<id>.json` (per-step
losses and final weights), and process 0 also writes `model.keras` and
`outputs.npz` (the trained model's outputs on fixed inputs).
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

import toy_task

FIXED_INPUTS_SEED = 1


def parse_args(argv=None):
    environ = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--coordinator",
        default=environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"),
        help="host:port of process 0; comma-separated job addresses are "
        "accepted, the first is the coordinator",
    )
    parser.add_argument(
        "--num-processes",
        type=int,
        default=int(environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", 1)),
    )
    parser.add_argument(
        "--process-id",
        type=int,
        default=int(environ.get("KERAS_DISTRIBUTION_PROCESS_ID", 0)),
    )
    parser.add_argument(
        "--local-device-ids",
        type=device_ids,
        default=None,
        help="comma-separated ids of this process's accelerators "
        "(default: all of this host's)",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        help="CPU devices this process uses when it has no accelerator",
    )
    toy_task.add_run_arguments(parser, init_timeout=True)
    args = parser.parse_args(argv)
    check_args(args)
    return args


def device_ids(text):
    return [int(part) for part in text.split(",")]


def check_args(args):
    """Exits with one line naming the flag and value of a bad argument,
    before any device or other process is touched."""
    count = args.num_processes
    if count < 1:
        sys.exit(f"--num-processes {count} must be at least 1")
    if not 0 <= args.process_id < count:
        sys.exit(
            f"--process-id {args.process_id} is outside [0, {count}) "
            f"for --num-processes {count}"
        )
    toy_task.local_batch(args.global_batch, count, "processes")
    if count == 1:
        return
    if not args.coordinator:
        sys.exit(
            "several processes need --coordinator host:port "
            "(or KERAS_DISTRIBUTION_JOB_ADDRESSES)"
        )
    host, _, port = coordinator_address(args.coordinator).rpartition(":")
    if not host or not port.isdigit():
        sys.exit(
            f"--coordinator {args.coordinator} needs a host and a port, "
            "as in 10.0.0.1:1234"
        )


def coordinator_address(coordinator):
    """The first of comma-separated job addresses: process 0's."""
    return coordinator.split(",")[0]


def join_processes(args, timeout):
    """Connects this process to the others within `timeout` seconds;
    exits if that fails.

    `keras.distribution.initialize` waits for the coordinator without a
    bound we can choose, so call `jax.distributed.initialize` directly,
    before anything touches the devices.
    """
    import jax

    address = coordinator_address(args.coordinator)
    # CPU collectives between processes (GPUs and TPUs use their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=args.num_processes,
            process_id=args.process_id,
            local_device_ids=args.local_device_ids,
            initialization_timeout=max(1, round(timeout)),
        )
    except Exception as error:  # noqa: BLE001 - any failure is fatal here
        sys.exit(
            f"process {args.process_id}: could not join "
            f"{args.num_processes} processes at coordinator {address} "
            f"within {args.init_timeout} s: {error}"
        )


def step_loss_recorder(losses):
    """A callback appending the running loss after every training step."""
    import keras

    class StepLosses(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    return StepLosses()


def train(args):
    """Fits this process's shard.

    Returns `(model, initial weights, per-step losses)`.
    """
    import keras

    # Same seed everywhere: every process creates the same initial weights.
    keras.utils.set_random_seed(0)
    distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    model = toy_task.build_model(spectral_norm=True)
    initial_weights = toy_task.named_weights(model)
    shard = [
        toy_task.process_shard(
            array, args.process_id, args.num_processes, args.global_batch
        )
        for array in toy_task.make_data(args.global_batch)
    ]
    losses = []
    model.fit(
        *shard,
        batch_size=args.global_batch // args.num_processes,
        epochs=args.epochs,
        shuffle=False,
        verbose=0,
        callbacks=[step_loss_recorder(losses)],
    )
    return model, initial_weights, losses


def write_results(model, initial_weights, losses, args):
    """Writes this process's results; process 0 also saves the model."""
    import jax
    import keras
    import numpy as np

    args.output_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "process_id": jax.process_index(),
        "num_processes": jax.process_count(),
        "num_devices": jax.device_count(),
        "losses": losses,
        "initial_weights": toy_task.as_lists(initial_weights),
        "weights": toy_task.as_lists(toy_task.named_weights(model)),
    }
    path = args.output_dir / f"process_{args.process_id}.json"
    path.write_text(json.dumps(result))
    save_from_process_0(model, args.output_dir / "model.keras")
    if args.process_id != 0:
        return
    # Outputs of a plain one-device copy holding the trained weights: the
    # distributed model spans devices this process cannot run alone.
    keras.distribution.set_distribution(None)
    local_model = toy_task.build_model(spectral_norm=True, compile=False)
    local_model.set_weights(model.get_weights())
    rng = np.random.default_rng(FIXED_INPUTS_SEED)
    inputs = rng.normal(size=(4, *toy_task.MAP_SHAPE)).astype("float32")
    outputs = keras.ops.convert_to_numpy(local_model(inputs))
    np.savez(args.output_dir / "outputs.npz", inputs=inputs, outputs=outputs)


def save_from_process_0(model, path):
    """Saves `model` to `path` from process 0 only.

    Every process must call `save`: saving creates variables (for the
    optimizer's state), and creating a distributed variable is a collective
    step all processes take together. The others write a throwaway copy.
    """
    import jax

    if jax.process_index() == 0:
        model.save(path)
        return
    with tempfile.TemporaryDirectory() as directory:
        model.save(pathlib.Path(directory) / path.name)


def main(argv=None):
    args = parse_args(argv)
    timeout = args.init_timeout
    if args.process_id != 0:
        timeout = toy_task.wait_for_coordinator(
            coordinator_address(args.coordinator),
            timeout,
            f"process {args.process_id}",
        )
    os.environ["KERAS_BACKEND"] = "jax"
    import jax

    # Before the first use of the devices, as joining the others.
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.num_processes > 1:
        join_processes(args, timeout)
    toy_task.local_batch(args.global_batch, jax.device_count(), "devices")
    model, initial_weights, losses = train(args)
    print(f"process {args.process_id}: final loss {losses[-1]:.6f}")
    if args.output_dir is not None:
        write_results(model, initial_weights, losses, args)


if __name__ == "__main__":
    main()
