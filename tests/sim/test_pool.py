"""Rules of sim/_pool.py: large blocks are reused only once nothing refers to them."""

import numpy as np
import torch

from sim._pool import BufferPool

N = 1 << 16  # int64: 512 KiB, above the pool's 256 KiB threshold


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_a_released_block_is_reused():
    pool = BufferPool()
    a = pool.empty(N, np.int64)
    where = _addr(a)
    del a
    assert _addr(pool.empty(N, np.int64)) == where


def test_a_block_in_use_is_never_handed_out():
    # held as a numpy view, a torch tensor, or a view of that tensor: each keeps the block busy
    pool = BufferPool()
    a = pool.empty(N, np.int64)
    a[:] = 7
    keep = [a[10:], torch.from_numpy(a), torch.from_numpy(a)[5:]]
    del a
    for held in keep:
        others = [pool.empty(N, np.int64) for _ in range(2)]
        for b in others:
            b[:] = 0  # would overwrite the held data if the block were shared
        assert int(held[0]) == 7
        del others
    del keep


def test_small_requests_and_dtypes():
    pool = BufferPool()
    small = pool.empty(10, np.float32)  # below the threshold: a plain array
    assert small.shape == (10,) and small.dtype == np.float32 and small.base is None
    f = pool.empty(N, np.float32)
    assert f.shape == (N,) and f.dtype == np.float32 and f.flags.c_contiguous
