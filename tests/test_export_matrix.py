"""The layer as users build it, exported in every format of the backend:
a configuration matrix (issue 28), where `test_export.py` checks every
kernel on one shape.

Dimensions: rank 1/2/3; one and several heads, with per-head widths that
are and are not multiples of 8 (the `fused` kernel pads to them);
`pool_size` on odd maps; `filters` other than the input channels;
spectral norm; the attention scores as a second output; channels first;
N not a multiple of the chunked kernel's block; fixed and unknown spatial
sizes; and the kernel (`dense`, `chunked`, `fused`, `auto`). `CASES`
covers every value of every dimension at least once (a covering subset,
not the product: four small models keep the pass within about a minute on
2 cores). Each model is exported with
each format of its backend (torch's ONNX both through `model.export`,
the TorchScript exporter, and through `torch.onnx.export(...,
dynamo=True)`), run in its runtime in a fresh process (one per runtime,
`export_runner.py`) at batch 2 and 1, and must match Keras within
`RELATIVE_TOLERANCE`, or fail as `PINNED` says: a converter's or
runtime's error on an op that is not the layer's own, asserted so that
the day it works is noticed.
"""

import collections
import re

import keras
import numpy as np
import pytest
from export_checks import DYNAMIC_SPATIAL
from export_checks import FORMATS
from export_checks import RUNTIMES
from export_checks import SUFFIXES
from export_checks import export_kwargs
from export_checks import keras_outputs
from export_checks import relative_difference
from export_checks import run_entries
from export_checks import runner_entries
from export_checks import skip_reason
from helpers import BACKEND

from conv_self_attention import SelfAttention1D
from conv_self_attention import SelfAttention2D
from conv_self_attention import SelfAttention3D
from conv_self_attention import export_model
from conv_self_attention import use_attention_kernel

LAYERS = {1: SelfAttention1D, 2: SelfAttention2D, 3: SelfAttention3D}
# torch's ONNX twice: Keras' `model.export` (TorchScript with a dynamic
# batch) and the dynamo exporter a torch user calls.
MATRIX_FORMATS = {
    **FORMATS,
    "torch": ("onnx", "onnx_dynamo", "torch"),
}

Case = collections.namedtuple(
    "Case",
    ["name", "rank", "spatial", "channels", "layer", "kernel", "chunk_size",
     "unknown", "other"],
)
"""One model: `SelfAttention{rank}D(gamma=1, **layer)` on inputs of
`spatial` size and `channels`, traced with `kernel` (and `chunk_size`);
`unknown`: built with unknown spatial sizes (then also run at `other`
where the format keeps them open)."""

CASES = (
    # Two heads of widths 2 and 6, pooled 9x11 (odd) to 5x6, filters
    # 24 on 16 channels; N = 99 in blocks of 32 (the last holds 3).
    Case("2d-chunked-heads-pool-filters", 2, (9, 11), 16,
         {"num_heads": 2, "pool_size": 2, "filters": 24}, "chunked", 32,
         False, None),
    # Rank 1, the scores as a second output (dense), spectral norm,
    # filters 8 on 3 channels (one head, widths 1 and 4).
    Case("1d-scores-spectral-filters", 1, (20,), 3,
         {"filters": 8, "spectral_norm": True,
          "return_attention_scores": True}, "dense", None, False, None),
    # Channels first, two heads of widths 1 and 4 (padded by `fused`).
    Case("2d-channels-first-fused-heads", 2, (8, 12), 16,
         {"num_heads": 2, "data_format": "channels_first"}, "fused", None,
         False, None),
    # Rank 3, four heads of width 8 (nothing to pad), pooled 3x5x6 to
    # 3x3x3, spectral norm, `auto`, sizes unknown.
    Case("3d-auto-heads8-pool-spectral-unknown", 3, (3, 5, 6), 32,
         {"num_heads": 4, "key_channels": 32, "value_channels": 32,
          "pool_size": (1, 2, 2), "spectral_norm": True}, "auto", None,
         True, (2, 4, 4)),
)

# Cells that fail in a converter or runtime on an op that is not the
# layer's own: `(backend, format, case): (stage, pattern of the error)`;
# `stage` is "export" (no file) or "runtime" (the file does not run).
# None today: the two that were (jax2onnx's MaxPool in ONNX Runtime,
# LiteRT's missing builtin 3D max pool) went away when the layer's pooling
# became a pad, a reshape and a max.
PINNED = {}


def _cells():
    return [
        (fmt, case)
        for fmt in MATRIX_FORMATS.get(BACKEND, ())
        for case in CASES
    ]


CELLS = _cells()


def _cell_id(cell):
    fmt, case = cell
    return f"{fmt}-{case.name}"


def _channels_first(case):
    return case.layer.get("data_format") == "channels_first"


def _input_shape(case, spatial):
    if _channels_first(case):
        return (case.channels, *spatial)
    return (*spatial, case.channels)


def _spatial_mode(fmt, case):
    """"fixed", "unknown" (exported as is) or "signature" (the spatial
    sizes fixed at export, the batch open)."""
    if not case.unknown:
        return "fixed"
    return "unknown" if fmt in DYNAMIC_SPATIAL[BACKEND] else "signature"


def _model(case):
    """The layer alone, so that channels first needs no `Conv2D` (which
    TensorFlow cannot run channels first on a CPU); batch unknown."""
    keras.utils.set_random_seed(0)
    spatial = (None,) * case.rank if case.unknown else case.spatial
    inputs = keras.Input(_input_shape(case, spatial))
    layer = LAYERS[case.rank](gamma=1.0, name="attention", **case.layer)
    outputs = layer(inputs)
    if isinstance(outputs, tuple):
        outputs = list(outputs)
    return keras.Model(inputs, outputs), layer


def _inputs(case, mode):
    rng = np.random.default_rng(case.rank)
    shape = (2, *_input_shape(case, case.spatial))
    batch = rng.normal(size=shape).astype("float32")
    inputs = {"batch2": batch, "batch1": batch[:1]}
    if mode == "unknown":
        other = (1, *_input_shape(case, case.other))
        inputs["other_size"] = rng.normal(size=other).astype("float32")
    return inputs


def _export(model, fmt, artifact, case, mode, sample):
    if fmt == "onnx_dynamo":
        _export_dynamo(model, artifact, sample)
        return
    signature = None
    if mode == "signature":
        signature = (None, *_input_shape(case, case.spatial))
    # The package's route (what the Deploying guide shows); test_export.py
    # covers Keras' own `model.export`.
    export_model(
        model, artifact, format=fmt, verbose=False,
        **export_kwargs(fmt, signature),
    )


def _export_dynamo(model, artifact, sample):
    """`torch.onnx.export(..., dynamo=True)` with the batch dynamic; the
    sample's spatial sizes are the exported ones."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=64)
    # The model's `forward(*args)`: one positional input.
    program = torch.onnx.export(
        model, (torch.from_numpy(sample),), dynamo=True,
        dynamic_shapes=[({0: batch},)], verbose=False,
    )
    program.save(artifact)


def _export_cell(cell, folder):
    """Exports one cell; returns `(runner entries, expected, traced)`."""
    fmt, case = cell
    name = _cell_id(cell)
    mode = _spatial_mode(fmt, case)
    model, layer = _model(case)
    inputs = _inputs(case, mode)
    artifact = str(folder / name) + SUFFIXES.get(fmt, "")
    with use_attention_kernel(case.kernel, case.chunk_size):
        expected = keras_outputs(model, inputs)
        _export(model, fmt, artifact, case, mode, inputs["batch2"])
    traced = layer.last_kernel  # before Keras runs the larger map below
    larger = None
    if mode == "signature":
        # Twice the exported size: right, or an error, never wrong.
        first = 2 if _channels_first(case) else 1
        reps = np.ones(case.rank + 2, int)
        reps[first : first + case.rank] = 2
        larger = np.tile(inputs["batch1"], reps)
        expected.update(keras_outputs(model, {"larger": larger}))
    entries = runner_entries(folder, name, artifact, inputs, larger)
    return entries, expected, traced


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`{cell id: (outputs or export error text, expected, traced)}`."""
    folder = tmp_path_factory.mktemp(f"export-matrix-{BACKEND}")
    results, groups = {}, {}
    for cell in CELLS:
        if skip_reason(cell[0]):
            continue
        name = _cell_id(cell)
        try:
            entries, expected, traced = _export_cell(cell, folder)
        except Exception as error:  # noqa: BLE001 - asserted by the test
            results[name] = (f"{type(error).__name__}: {error}", None, None)
            continue
        groups[name] = (RUNTIMES[cell[0]][0], entries)
        results[name] = (None, expected, traced)
    for name, produced in run_entries(groups, folder).items():
        results[name] = (produced, *results[name][1:])
    return results


def _check_traced(case, traced):
    """The kernel each cell is meant to test is the one traced, in its
    export form where the backend has one (torch tells by itself, JAX
    within `export_model`: the chunked blocks unrolled)."""
    assert traced.exporting == (BACKEND != "tensorflow"), traced
    if case.kernel != "auto":
        assert traced.implementation == case.kernel, traced
    if case.chunk_size is not None:
        assert traced.chunk_size == case.chunk_size, traced
        # The last block is short: what the dimension is there for.
        assert np.prod(case.spatial) % traced.chunk_size != 0


def _check_pinned(cell, produced):
    stage, pattern = PINNED[BACKEND, cell[0], cell[1].name]
    if stage == "export":
        assert isinstance(produced, str), "exports now: unpin the cell"
        error = produced
    else:
        assert not isinstance(produced, str), produced
        assert "error" in produced, "runs now: unpin the cell"
        error = str(produced["error"])
    assert re.search(pattern, error), error


def _compare(produced, expected):
    """max |Δ| / max |y| per output; the larger map refused or right."""
    relative = {}
    larger = {k: expected.pop(k) for k in list(expected)
              if k.startswith("larger")}
    if "larger_error" in produced:
        relative["larger"] = "refused"
    elif larger:
        for key, want in larger.items():
            relative_difference(produced[key], want, key)
        relative["larger"] = "computed"
    for key, want in expected.items():
        relative[key] = relative_difference(produced[key], want, key)
    return relative


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_matrix_cell_matches_keras_or_fails_as_pinned(exported, cell):
    reason = skip_reason(cell[0])
    if reason:
        pytest.skip(reason)
    produced, expected, traced = exported[_cell_id(cell)]
    if (BACKEND, cell[0], cell[1].name) in PINNED:
        _check_pinned(cell, produced)
        return
    assert not isinstance(produced, str), produced
    assert "error" not in produced, str(produced.get("error"))
    _check_traced(cell[1], traced)
    relative = _compare(produced, dict(expected))
    worst = max(v for v in relative.values() if isinstance(v, float))
    # Shown with `pytest -rP`: the guide's matrix.
    print(
        f"{BACKEND} {_cell_id(cell)} traced {traced.implementation}: "
        f"worst {worst:.1e} {relative}"
    )


def _dimensions(case):
    """The value `case` takes on each dimension of the matrix."""
    layer = LAYERS[case.rank](**case.layer)
    layer.build((None, *_input_shape(case, case.spatial)))
    heads = layer.num_heads
    widths = (layer.resolved_key_channels // heads,
              layer.resolved_value_channels // heads)
    odd_map = any(size % 2 for size in case.spatial)
    return {
        "rank": case.rank,
        "several heads": heads > 1,
        "widths multiples of 8": all(w % 8 == 0 for w in widths),
        "pool_size on an odd map": layer.pool_size is not None and odd_map,
        "filters != channels": layer.output_channels != case.channels,
        "spectral_norm": layer.spectral_norm,
        "scores": layer.return_attention_scores,
        "data_format": layer.data_format,
        "short last block": case.chunk_size is not None
        and np.prod(case.spatial) % case.chunk_size != 0,
        "unknown sizes": case.unknown,
        "kernel": case.kernel,
    }


@pytest.mark.once
def test_cases_cover_every_value_of_every_dimension():
    covered = collections.defaultdict(set)
    for case in CASES:
        for dimension, value in _dimensions(case).items():
            covered[dimension].add(value)
    both = {False, True}
    assert covered == {
        "rank": {1, 2, 3},
        "several heads": both,
        "widths multiples of 8": both,
        "pool_size on an odd map": both,
        "filters != channels": both,
        "spectral_norm": both,
        "scores": both,
        "data_format": {"channels_last", "channels_first"},
        "short last block": both,
        "unknown sizes": both,
        "kernel": {"dense", "chunked", "fused", "auto"},
    }
