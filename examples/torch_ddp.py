"""Training a Keras model holding `SelfAttention2D` from plain PyTorch code,
data-parallel over several processes with `DistributedDataParallel`.

On the torch backend a Keras model is a `torch.nn.Module`: this script
wraps it in `DistributedDataParallel`, trains it with a torch optimizer in
an ordinary loop, and calls it with `training=True` (`module.train()` does
not reach Keras' `training` argument, and spectral normalization updates
its power-iteration vectors only in training).

Launch one process per GPU (or per host) with `torchrun`, which sets
`MASTER_ADDR`, `MASTER_PORT`, `RANK`, `LOCAL_RANK` and `WORLD_SIZE`, and
give the global batch, which must divide over all processes:

    # one host (a free port is chosen for you)
    torchrun --standalone --nproc-per-node 4 examples/torch_ddp.py \\
        --global-batch 64
    # two hosts with 8 GPUs each: on host 0 (10.0.0.1), then --node-rank 1
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 \\
        --master-addr 10.0.0.1 --master-port 1234 examples/torch_ddp.py \\
        --global-batch 64

Each process uses the GPU of its `LOCAL_RANK` and nccl, or the CPU and
gloo where torch sees no GPU. A host needs one GPU per process (nccl
cannot share one among processes): with more processes than visible GPUs
every process exits with an error saying so before it joins the process
group; start fewer (`--nproc-per-node`), or train on the CPUs with
`CUDA_VISIBLE_DEVICES=` (empty), as the tests do. A process that cannot
reach `MASTER_ADDR:MASTER_PORT` within `--init-timeout` seconds exits with
an error naming the address. With `--output-dir`, rank 0 writes
`result.json` (the all-reduced mean loss of every step and the final
weights) and `weights.pt` (the model's `state_dict`).
"""

import argparse
import datetime
import json
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported

import toy_task  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    toy_task.add_run_arguments(parser, init_timeout=True)
    args = parser.parse_args(argv)
    # Before joining: a bad batch fails every process the same way.
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    toy_task.local_batch(args.global_batch, world_size, "processes")
    return args


def join_processes(timeout):
    """Joins the process group described by torchrun's variables; exits
    with a message naming the address if that fails or times out.

    Returns `(rank, world_size, device)`.
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    address = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    left = timeout
    if rank != 0:  # rank 0 (or torchrun) serves the address
        left = toy_task.wait_for_coordinator(address, timeout, f"rank {rank}")
    import torch
    import torch.distributed as dist

    device = choose_device(rank)
    backend = "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "nccl"
    try:
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=max(1, left)),
        )
    except Exception as error:  # noqa: BLE001 - any failure is fatal here
        sys.exit(
            f"rank {rank}: could not join {world_size} processes at "
            f"{address} within {timeout} s: {str(error).splitlines()[0]}"
        )
    return rank, world_size, device


def choose_device(rank):
    """The GPU of this process's `LOCAL_RANK`, or the CPU where torch sees
    no GPU; exits with one line where this host starts more processes
    (`LOCAL_WORLD_SIZE`) than torch sees GPUs."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), local_rank + 1)
    gpus = torch.cuda.device_count()
    if processes > gpus:
        sys.exit(
            f"rank {rank}: {processes} processes on this host but {gpus} "
            f"GPU(s) visible; each process needs its own GPU. Start at most "
            f"--nproc-per-node {gpus}, or set CUDA_VISIBLE_DEVICES= (empty) "
            "to train on the CPUs with gloo"
        )
    return torch.device("cuda", local_rank)


def train(model, rank, world_size, device, args):
    """Trains with this rank's slice of every global batch.

    Returns the mean loss over all ranks of every step.
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model.to(device)
    ddp_model = DistributedDataParallel(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=toy_task.LEARNING_RATE)
    images, targets = (
        torch.from_numpy(
            toy_task.process_shard(array, rank, world_size, args.global_batch)
        )
        for array in toy_task.make_data(args.global_batch)
    )
    local_batch = args.global_batch // world_size
    losses = []
    for _ in range(args.epochs):
        for start in range(0, len(images), local_batch):
            batch = slice(start, start + local_batch)
            predictions = ddp_model(images[batch].to(device), training=True)
            loss = torch.mean((predictions - targets[batch].to(device)) ** 2)
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients over all ranks
            optimizer.step()
            # Equal shards: the mean of the ranks' means is the batch mean.
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            losses.append(float(mean_loss) / world_size)
    return losses


def write_results(model, initial_weights, losses, world_size, output_dir):
    import torch

    output_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "world_size": world_size,
        "losses": losses,
        "initial_weights": toy_task.as_lists(initial_weights),
        "weights": toy_task.as_lists(toy_task.named_weights(model)),
    }
    (output_dir / "result.json").write_text(json.dumps(result))
    torch.save(model.state_dict(), output_dir / "weights.pt")


def main(argv=None):
    args = parse_args(argv)
    rank, world_size, device = join_processes(args.init_timeout)
    import keras
    import torch.distributed as dist

    # Same seed on every rank: the same initial weights everywhere (DDP
    # also broadcasts rank 0's parameters when it wraps the model).
    keras.utils.set_random_seed(0)
    model = toy_task.build_model(spectral_norm=True, compile=False)
    initial_weights = toy_task.named_weights(model)
    losses = train(model, rank, world_size, device, args)
    if rank == 0:
        print(f"final loss {losses[-1]:.6f}")
        if args.output_dir is not None:
            write_results(
                model, initial_weights, losses, world_size, args.output_dir
            )
    dist.destroy_process_group()


def exit_now(code=0):
    """Ends the process without Python's interpreter shutdown.

    Once DDP has used it, the process group outlives
    `destroy_process_group`: gloo's worker threads still run after the DDP
    module and the model are garbage-collected. A worker that frees its last
    collective while Python shuts down cannot take the interpreter lock and
    aborts the process ("terminate called without an active exception"):
    2 of 20 three-process runs with torch 2.14 on a loaded 2-core machine.
    Everything this script writes is closed by now; only the standard
    streams need flushing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
    exit_now()
