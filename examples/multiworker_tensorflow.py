"""Data-parallel training over several TensorFlow workers (processes or
hosts) with `tf.distribute.MultiWorkerMirroredStrategy` and a custom loop.

Keras 3's `fit` does not work under `MultiWorkerMirroredStrategy` (it fails
with "Attempt to convert a value (PerReplica...) to a Tensor",
keras-team/keras#20585), but a custom training step run with
`strategy.run` does: the model, the Keras optimizer and the layer are
created in the strategy's scope, and the strategy sums the replicas'
gradients (each replica's loss is divided by the number of replicas).

Each worker gets the cluster from `TF_CONFIG`, or from `--workers` (every
worker's host:port, the same list everywhere) and `--index` (its position
in the list):

    # on host 0 (10.0.0.1) and on host 1 (10.0.0.2)
    python examples/multiworker_tensorflow.py \\
        --workers 10.0.0.1:1234,10.0.0.2:1234 --index 0 --global-batch 64
    python examples/multiworker_tensorflow.py \\
        --workers 10.0.0.1:1234,10.0.0.2:1234 --index 1 --global-batch 64

The global batch must divide over the workers' replicas. Without either,
it trains in this process alone. With `--output-dir`, each worker writes
`worker_<index>.json` (per-step losses, initial and final weights).
"""

import argparse
import json
import os

os.environ["KERAS_BACKEND"] = "tensorflow"  # before Keras is imported

import toy_task  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers", default=None, help="comma-separated host:port list"
    )
    parser.add_argument("--index", type=int, default=0)
    toy_task.add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.workers:
        workers = len(args.workers.split(","))
        toy_task.local_batch(args.global_batch, workers, "workers")
    return args


def make_strategy(workers, index):
    """The multi-worker strategy when a cluster is given, else one device."""
    import tensorflow as tf

    if workers:
        cluster = {"worker": workers.split(",")}
        task = {"type": "worker", "index": index}
        os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
    if "TF_CONFIG" in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_dataset(strategy, global_batch):
    """Each worker reads its own rows of every global batch, cut into one
    batch per local replica."""
    import tensorflow as tf

    def worker_dataset(context):
        arrays = [
            toy_task.process_shard(
                array,
                context.input_pipeline_id,
                context.num_input_pipelines,
                global_batch,
            )
            for array in toy_task.make_data(global_batch)
        ]
        per_replica = context.get_per_replica_batch_size(global_batch)
        return tf.data.Dataset.from_tensor_slices(tuple(arrays)).batch(
            per_replica
        )

    return strategy.distribute_datasets_from_function(worker_dataset)


def make_train_step(strategy, model, optimizer):
    """A compiled step: every replica computes its gradients, the optimizer
    applies their sum; returns the mean loss over the global batch."""
    import tensorflow as tf

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss = tf.reduce_mean(tf.square(predictions - targets))
            # Summed over replicas, the scaled losses give the batch mean.
            scaled_loss = loss / strategy.num_replicas_in_sync
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return scaled_loss

    @tf.function
    def train_step(images, targets):
        losses = strategy.run(replica_step, args=(images, targets))
        return strategy.reduce("SUM", losses, axis=None)

    return train_step


def train(strategy, args):
    """Returns `(model, initial weights, per-step losses)`."""
    import keras

    keras.utils.set_random_seed(0)  # the same initial weights everywhere
    with strategy.scope():
        model = toy_task.build_model(spectral_norm=True, compile=False)
        optimizer = keras.optimizers.SGD(toy_task.LEARNING_RATE)
    initial_weights = toy_task.named_weights(model)
    train_step = make_train_step(strategy, model, optimizer)
    toy_task.local_batch(
        args.global_batch, strategy.num_replicas_in_sync, "replicas"
    )
    dataset = make_dataset(strategy, args.global_batch)
    losses = []
    for _ in range(args.epochs):
        for images, targets in dataset:
            losses.append(float(train_step(images, targets)))
    return model, initial_weights, losses


def main(argv=None):
    args = parse_args(argv)
    strategy = make_strategy(args.workers, args.index)
    model, initial_weights, losses = train(strategy, args)
    print(f"worker {args.index}: final loss {losses[-1]:.6f}")
    if args.output_dir is None:
        return
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "losses": losses,
        "initial_weights": toy_task.as_lists(initial_weights),
        "weights": toy_task.as_lists(toy_task.named_weights(model)),
    }
    path = args.output_dir / f"worker_{args.index}.json"
    path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
