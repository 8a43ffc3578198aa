"""Recycled memory for the large outputs of the math kernels (alignment, advantages).

A fresh multi-megabyte numpy array is served by ``mmap`` and given back to the OS when freed, so
every call pays a page fault (and the kernel's zeroing) per 4 KiB page again: at a million aligned
rows that costs about as much as the computation. The pool keeps such blocks and hands one out again
once nothing refers to it any more: an array a caller still holds (directly, through a numpy view
or through a tensor made by ``torch.from_numpy``) keeps its block busy, so results never alias.
Every view of a block refers to the block itself (numpy collapses chains of views onto the array
that owns the memory), which makes its reference count the test of whether it is free.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["BufferPool", "POOL"]


class BufferPool:
    """Large uninitialised arrays from blocks reused once unreferenced.

    Args:
        min_bytes: requests below this come straight from ``np.empty`` (the heap serves them
            without page faults).
        max_bytes: the pool stops tracking its oldest blocks beyond this total.
    """

    def __init__(self, min_bytes: int = 1 << 18, max_bytes: int = 1 << 29) -> None:
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()
        probe = [np.empty(1)]
        self._free_refs = sys.getrefcount(probe[0])  # an unreferenced block, counted the same way

    def empty(self, n: int, dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised ``(n,)`` array of ``dtype`` (a view of a pooled block when large)."""
        dtype = np.dtype(dtype)
        nbytes = int(n) * dtype.itemsize
        if nbytes < self.min_bytes:
            return np.empty(n, dtype)
        with self._lock:
            block = self._take(nbytes)
        return block[:nbytes].view(dtype)

    def _take(self, nbytes: int) -> np.ndarray:
        best = None
        for i in range(len(self._blocks)):
            size = self._blocks[i].nbytes
            # free: only the list refers to it (every live view holds a reference to the block)
            if nbytes <= size <= 2 * nbytes and (best is None or size < best.nbytes):
                if sys.getrefcount(self._blocks[i]) == self._free_refs:
                    best = self._blocks[i]
        if best is not None:
            return best
        step = 1 << max(nbytes.bit_length() - 4, 12)  # round up by at most 1/8
        block = np.empty(-(-nbytes // step) * step, np.uint8)
        self._blocks.append(block)
        while sum(b.nbytes for b in self._blocks) > self.max_bytes and len(self._blocks) > 1:
            self._blocks.pop(0)  # forgotten, freed when its last view goes
        return block

    def clear(self) -> None:
        """Forget every block (memory is freed as the last views go)."""
        with self._lock:
            self._blocks.clear()


POOL = BufferPool()
"""The process-wide pool used by ``sim.alignment`` and ``sim.advantages``."""
