"""Command line of the demo.

Keras fixes its backend when it is first imported, so this module parses the
options without importing Keras. `python -m conv_self_attention.demo` does
import the parent package (and so Keras) first; when `--backend` then asks
for another backend, the demo runs itself again in a fresh process with
`KERAS_BACKEND` set.
"""

import argparse
import os
import subprocess
import sys

BACKENDS = ("tensorflow", "jax", "torch")
DATASETS = ("digits", "mnist")
TASKS = ("all", "digits", "lookup")
QUERY_KEY_INITS = ("independent", "mimetic")
# Marks the re-run process, so a backend mismatch cannot loop.
_CHILD_FLAG = "CONV_SELF_ATTENTION_DEMO_CHILD"


def build_parser():
    """Returns the demo's `argparse.ArgumentParser`."""
    parser = argparse.ArgumentParser(
        prog="python -m conv_self_attention.demo",
        description=(
            "Train digit classifiers and a small SAGAN with and without the "
            "self-attention layer, and four networks on a lookup task that "
            "needs long-range, content-based attention; write metrics, "
            "curves, samples and attention maps."
        ),
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="all",
        help=(
            "digits: the classifiers and the SAGAN; lookup: the lookup "
            "task's four networks; all: both (default)."
        ),
    )
    parser.add_argument(
        "--lookup-seeds",
        type=_positive_int,
        help="lookup-task seeds per network (default 2; 1 with --quick).",
    )
    parser.add_argument(
        "--lookup-first-seed",
        type=_non_negative_int,
        default=0,
        help=(
            "the lookup task runs seeds K, K+1, ... (default 0); each seed "
            "draws its own maps and initial weights."
        ),
    )
    parser.add_argument(
        "--lookup-epochs",
        type=_positive_int,
        help="lookup-task epochs (default 15; 1 with --quick).",
    )
    parser.add_argument(
        "--query-key-init",
        choices=QUERY_KEY_INITS,
        help=(
            "the layers' query_key_init in every network (default: the "
            "layer's default)."
        ),
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend. Defaults to KERAS_BACKEND or Keras' default.",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        help="GAN epochs (default 40; 1 with --quick).",
    )
    parser.add_argument(
        "--classifier-epochs",
        type=_positive_int,
        help="classifier epochs (default 15; 1 with --quick).",
    )
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=1,
        help=(
            "GAN comparisons to run, with seeds seed, seed+1, ... (default "
            "1); the results report their mean and spread."
        ),
    )
    parser.add_argument(
        "--classifier-seeds",
        type=_positive_int,
        help="classifier comparisons to run (default 3; 1 with --quick).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=("a short run (one seed and one epoch each, on less data) "
              "that checks every step end to end."),
    )
    parser.add_argument(
        "--output-dir",
        default="demo_output",
        help="where results are written (default: demo_output).",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help=(
            "digits: scikit-learn's embedded 8x8 digits (default); mnist: "
            "keras.datasets.mnist, only if its file is already cached."
        ),
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0)."
    )
    return parser


def main(argv=None):
    """Runs the demo; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    loaded = _loaded_keras_backend()
    if args.backend and loaded not in (None, args.backend):
        if os.environ.get(_CHILD_FLAG):
            print(
                f"error: could not switch Keras from {loaded} to "
                f"{args.backend}.",
                file=sys.stderr,
            )
            return 2
        return _rerun_with_backend(args.backend, argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend

    from conv_self_attention.demo import data

    if args.dataset == "mnist":
        try:
            data.check_mnist_cached()
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    from conv_self_attention.demo import run

    run.run(args)
    return 0


def _loaded_keras_backend():
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    return keras.backend.backend()


def _rerun_with_backend(backend, argv):
    environment = {**os.environ, "KERAS_BACKEND": backend, _CHILD_FLAG: "1"}
    command = [sys.executable, "-m", "conv_self_attention.demo", *argv]
    return subprocess.run(command, env=environment, check=False).returncode


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        )
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, received {text!r}"
        )
    return value
