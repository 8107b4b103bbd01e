"""The chunked kernel's block planner, `chunked.plan_blocks`: a pure
function, so its GPU cases are tested on any machine."""

import itertools

import pytest

from conv_self_attention.kernels import chunked

pytestmark = pytest.mark.once


def plan(keys, batch, heads=1, platform="gpu", queries="M", chunk=None):
    """The plan for N = M (unless `queries` is given)."""
    queries = keys if queries == "M" else queries
    return chunked.plan_blocks(queries, keys, batch, heads, platform, chunk)


def block_logits(planned, keys, batch, heads=1):
    images = 1 if planned.per_image else batch
    return planned.chunk_size * keys * heads * images


def test_measured_gpu_blocks():
    # 1024 queries at 128x128 batch 8 and at 256x256 batch 2: the chunk
    # measured to match the naive block within 2 GiB on an H200.
    assert plan(128 * 128, 8) == (1024, False)
    assert plan(256 * 256, 2) == (1024, False)


def test_cpu_blocks_stay_cache_sized():
    assert plan(64 * 64, 4, platform="cpu") == (128, False)
    # 32 queries of 8 images would be twice the CPU block: one image at a
    # time instead, at the same size.
    assert plan(128 * 128, 8, platform="cpu") == (128, True)


def test_large_batch_goes_per_image_within_the_budget():
    # 128x128 at batch 64 (which, unknown at trace time, once got blocks
    # of 2048 queries: 8 GiB of logits): 128 queries of every image.
    assert plan(128 * 128, 64) == (128, False)
    # At batch 512 even 64 queries of every image are over the budget:
    # one image at a time.
    planned = plan(128 * 128, 512)
    assert planned == (2**27 // (128 * 128), True)
    assert block_logits(planned, 128 * 128, 512) <= 2**27


def test_unknown_batch_is_planned_per_image():
    for batch in (None, "symbolic"):
        planned = plan(128 * 128, batch, heads=4)
        assert planned == (2**27 // (4 * 128 * 128), True)
    # An explicit chunk is honoured, one image at a time.
    assert plan(128 * 128, None, chunk=512) == (512, True)


def test_explicit_chunk_is_honoured_past_the_budget():
    assert plan(128 * 128, 64, chunk=4096) == (4096, False)
    # Only clipped to N: a larger block would only pad N.
    assert plan(100, 2, queries=37, chunk=64) == (37, False)


def test_unknown_sizes():
    # M unknown: no bound can be computed; the range's middle value.
    assert plan(None, 8) == (1024, False)
    assert plan(None, None, platform="cpu") == (256, True)
    # N unknown: the chunk is not clipped.
    assert plan(64, 1, queries=None, chunk=500) == (500, False)


def test_small_maps_stay_whole_batch():
    # N below the smallest chunk: blocks of all N queries, whole batch.
    assert plan(20, 4, queries=20, platform="cpu") == (20, False)


@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_every_default_block_is_within_the_budget(platform):
    budget = chunked.block_elements(platform)
    for keys, batch, heads in itertools.product(
        (1, 100, 4096, 16384, 65536), (1, 3, 64, 512, None), (1, 4, 8)
    ):
        planned = plan(keys, batch, heads, platform)
        assert isinstance(planned.chunk_size, int)
        assert 1 <= planned.chunk_size <= keys
        assert block_logits(planned, keys, batch or 1, heads) <= budget
        if batch is None:
            assert planned.per_image
        elif not planned.per_image:
            assert planned.chunk_size >= min(32, keys)
