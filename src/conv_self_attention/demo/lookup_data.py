"""The lookup task's data: a content-based lookup over a long distance.

Each `SIZE x SIZE` RGB map holds three 3x3 glyphs ("keys") in its top band,
each drawn in its own colour and in one of three shapes, and two 3x3
blobs in its bottom band, each coloured like one of the keys. Every blob
pixel's target is the shape of the key of its colour; every other pixel's
is background (class 0, weighted `BACKGROUND_WEIGHT` in the loss). Which
colour goes with which shape changes from map to map, so a blob pixel can
only be labelled by finding the key of its colour, rows away: further than
the convolutions' receptive field, and not in a global average either
(the three keys' colours and shapes are all there, unpaired).

Procedurally generated (no download), deterministic per seed.
"""

import dataclasses

import numpy as np

SIZE = 16
SHAPES = 3  # Classes 1..3; 0 is background.
KEYS = 3
BLOBS = 2
BACKGROUND_WEIGHT = 0.02
# Saturated, well separated colours; each map uses three of them.
PALETTE = np.array([
    [1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.3, 1.0], [1.0, 1.0, 0.1],
    [1.0, 0.1, 1.0], [0.1, 1.0, 1.0],
], dtype="float32")
GLYPHS = np.array([
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]],  # plus
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]],  # cross
    [[1, 1, 1], [1, 0, 1], [1, 1, 1]],  # ring
], dtype="float32")
# Keys in rows 0..3, blobs in rows 11..15: at least 8 rows apart.
KEY_ROWS = (0, 2)
BLOB_ROWS = (11, SIZE - 3)


@dataclasses.dataclass
class LookupData:
    """Maps `(n, SIZE, SIZE, 3)` in [0, 1], targets `(n, SIZE, SIZE)`
    int32, per-pixel loss weights, and the mask of blob pixels."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    blobs: np.ndarray


def make_lookup(count, seed):
    """`count` maps drawn with `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    x = np.zeros((count, SIZE, SIZE, 3), "float32")
    y = np.zeros((count, SIZE, SIZE), "int32")
    for image, target in zip(x, y, strict=True):
        _draw(rng, image, target)
    blobs = y > 0
    weights = np.where(blobs, 1.0, BACKGROUND_WEIGHT).astype("float32")
    return LookupData(x, y, weights, blobs)


def _draw(rng, image, target):
    colours = rng.choice(len(PALETTE), KEYS, replace=False)
    shapes = rng.integers(0, SHAPES, KEYS)
    for column, colour, shape in zip(_columns(rng, KEYS), colours, shapes,
                                     strict=True):
        row = rng.integers(KEY_ROWS[0], KEY_ROWS[1] + 1)
        patch = GLYPHS[shape][..., None] * PALETTE[colour]
        image[row : row + 3, column : column + 3] = patch
    looked_up = rng.choice(KEYS, BLOBS, replace=False)
    for column, key in zip(_columns(rng, BLOBS), looked_up, strict=True):
        row = rng.integers(BLOB_ROWS[0], BLOB_ROWS[1] + 1)
        image[row : row + 3, column : column + 3] = PALETTE[colours[key]]
        target[row : row + 3, column : column + 3] = shapes[key] + 1


def _columns(rng, count):
    """`count` left columns of 3-wide glyphs, at least one column apart."""
    free = SIZE - 3 - 4 * (count - 1)
    offsets = np.sort(rng.choice(free + count, count, replace=False))
    # Spread the sorted draws so that neighbours keep a gap of one column.
    return [int(offset + 3 * index) for index, offset in
            enumerate(offsets - np.arange(count))]
