"""Data-parallel training of a small SelfAttention2D model with Keras' own
engines, compared with single-device training on the same data.

- TensorFlow: `tf.distribute.MirroredStrategy`.
- JAX: `keras.distribution.DataParallel`.

Each replica gets a slice of every global batch and the gradients are
averaged across replicas, so a data-parallel step equals a single-device
step on the whole batch up to float rounding. The script trains the same
model (same initial weights, same batches) both ways and prints the losses
as JSON, with and without spectral normalization.

On a machine with several GPUs or TPU cores the same code uses all of them.
On a CPU-only machine it splits the CPU into `--devices` logical devices,
which must happen before the backend starts; hence the backend is chosen
on the command line, not by `KERAS_BACKEND`:

    python examples/distributed_training.py --backend tensorflow
    python examples/distributed_training.py --backend jax --devices 2
"""

import argparse
import json
import os

import toy_task


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backend", choices=("tensorflow", "jax"), required=True
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=2,
        help="logical CPU devices to create when no accelerator is present",
    )
    return parser.parse_args(argv)


def split_host_devices(backend, count):
    """Makes `count` CPU devices; must run before the backend is imported."""
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        # Affects only the host (CPU) platform; GPUs and TPUs are unchanged.
        flags = os.environ.get("XLA_FLAGS", "")
        flag = f"--xla_force_host_platform_device_count={count}"
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )


def step_loss_recorder(losses):
    """A callback appending the running loss after every training step."""
    import keras

    class StepLosses(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    return StepLosses()


def train(model, data):
    """Fits on the same batches in the same order.

    Returns the step losses and every final weight (the spectral norm's
    power-iteration state included).
    """
    images, targets = data
    losses = []
    model.fit(
        images,
        targets,
        batch_size=toy_task.BATCH_SIZE,
        epochs=toy_task.EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[step_loss_recorder(losses)],
    )
    return losses, model.get_weights()


def train_tensorflow(data, initial_weights, spectral_norm, parallel):
    """Returns `(step losses, final weights, replicas)`."""
    import tensorflow as tf

    if not parallel:
        strategy = tf.distribute.get_strategy()  # the default: one device
    else:
        # `MirroredStrategy()` alone takes every GPU but only one CPU, so
        # name the devices to get the logical CPUs on a CPU-only machine.
        devices = tf.config.list_logical_devices("GPU")
        devices = devices or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    with strategy.scope():
        model = toy_task.build_model(spectral_norm)
        model.set_weights(initial_weights)
    return (*train(model, data), strategy.num_replicas_in_sync)


def train_jax(data, initial_weights, spectral_norm, parallel):
    """Returns `(step losses, final weights, replicas)`."""
    import keras

    # `DataParallel()` takes every accelerator, or every host device.
    distribution = keras.distribution.DataParallel() if parallel else None
    keras.distribution.set_distribution(distribution)
    try:
        model = toy_task.build_model(spectral_norm)
        model.set_weights(initial_weights)
        replicas = len(distribution.device_mesh.devices) if parallel else 1
        return (*train(model, data), replicas)
    finally:
        keras.distribution.set_distribution(None)


def compare(backend):
    """Single-device and data-parallel runs from the same initial weights,
    with and without spectral normalization."""
    import keras

    run = train_tensorflow if backend == "tensorflow" else train_jax
    data = toy_task.make_data()
    results = {"backend": backend}
    for spectral_norm in (False, True):
        keras.utils.set_random_seed(0)
        initial_weights = toy_task.build_model(spectral_norm).get_weights()
        single, single_weights, _ = run(
            data, initial_weights, spectral_norm, parallel=False
        )
        parallel, parallel_weights, replicas = run(
            data, initial_weights, spectral_norm, parallel=True
        )
        name = "spectral_norm" if spectral_norm else "plain"
        results[name] = {
            "single": single,
            "parallel": parallel,
            "max_weight_difference": max_difference(
                single_weights, parallel_weights
            ),
            "max_weight_change": max_difference(
                initial_weights, single_weights
            ),
        }
        results["replicas"] = replicas
    return results


def max_difference(weights, other_weights):
    """Largest absolute difference over two lists of weight arrays."""
    return max(
        float(abs(weight - other).max())
        for weight, other in zip(weights, other_weights, strict=True)
    )


def main(argv=None):
    args = parse_args(argv)
    split_host_devices(args.backend, args.devices)
    results = compare(args.backend)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
