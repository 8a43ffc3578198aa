"""Trajectory alignment of sub-agent rows to a fixed target count per rollout (DESIGN §3.2).

A rollout k of the whole system delegates d_k >= 0 times, so it produces d_k sub-agent trajectories
("sub rows"). To train the sub-agent on batches of fixed shape, M-GRPO (Hong et al. 2025)
brings every rollout to a target count D (the paper's D_max):

- d_k > D: keep D rows drawn uniformly **without** replacement (drop d_k - D). Every mode except
  ``none`` does this.
- 0 < d_k < D: keep all d_k rows and add D - d_k rows taken from the same rollout, by mode:

  ============== ==================================================================================
  mode           added rows
  ============== ==================================================================================
  duplicate_drop copies drawn uniformly **with** replacement (the paper; default)
  balanced       copies spread as evenly as possible: every original appears floor(D/d_k) or
                 ceil(D/d_k) times in all; which originals get the extra copy is random
  mask           pad rows of weight 0 that point at the rollout's own rows (valid indices)
  none           nothing: rows are kept as they are (ragged), and nothing is dropped
  ============== ==================================================================================

- d_k = 0: the rollout contributes no rows (counted as ``empty``).

The result indexes the original sub rows; a rollout's aligned rows are contiguous and rollouts
appear in increasing id order, so after alignment every non-empty rollout is a block of exactly D
rows. On the CPU a compiled kernel aligns all rollouts in one pass (drawing only from the
generator's own stream, exactly the numbers the vectorized torch path draws); on other devices
the torch path works on a ``(non_empty_rollouts, target)`` grid. Either way there is no Python
loop over rollouts. Large outputs come from a pool of reused blocks (:mod:`sim._pool`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from sim._checks import as_index_tensor, check_choice
from sim._kernels import (
    MODE_CODES,
    align_kernel,
    count_kernel,
    order_kernel,
    pcg_advance,
    pcg_jumps,
)
from sim._pool import POOL

__all__ = ["ALIGN_FILLS", "ALIGN_MODES", "Alignment", "align", "target_from_counts"]


@dataclass(frozen=True)
class Alignment:
    """Aligned sub rows, as indices into the original sub rows.

    Attributes:
        index: ``(num_aligned,)`` int64 indices into the original sub rows, grouped by rollout
            (rollout ids increasing); exactly ``target`` entries per non-empty rollout unless
            ``mode == "none"``.
        blocks: ``(num_blocks,)`` int64 ids of the non-empty rollouts, increasing: aligned rows
            ``[i * target, (i + 1) * target)`` belong to rollout ``blocks[i]`` (not for ``none``).
        calls: ``(n_rollouts,)`` int64 d_k, the number of original sub rows of each rollout.
        duplicated: rows added (copies; for ``mask`` the zero-weight pad rows).
        dropped: original rows left out (rollouts with d_k > target).
        empty: rollouts with d_k = 0.
        target: D.
        mode: the alignment mode.
    """

    index: torch.Tensor
    blocks: torch.Tensor
    calls: torch.Tensor
    duplicated: int
    dropped: int
    empty: int
    target: int
    mode: str
    pad_weight: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """``(num_aligned,)`` float32 row weights: 1.0, except 0.0 for ``mask`` padding."""
        if self.pad_weight is not None:
            return self.pad_weight
        if self.index.device.type == "cpu":
            ones = POOL.empty(len(self.index), np.float32)
            ones.fill(1.0)
            return torch.from_numpy(ones)
        return torch.ones(len(self.index), device=self.index.device)

    @property
    def rollout(self) -> torch.Tensor:
        """``(num_aligned,)`` int64 parent rollout id of each aligned row."""
        if self.mode == "none":
            return torch.repeat_interleave(self.blocks, self.calls[self.blocks])
        return torch.repeat_interleave(self.blocks, self.target)

    def to(self, device: torch.device | str) -> Alignment:
        """The same alignment with its tensors on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("index", "blocks", "calls")}
        if self.pad_weight is not None:
            moved["pad_weight"] = self.pad_weight.to(device)
        return replace(self, **moved)

    def counts(self) -> dict[str, int]:
        """``{"duplicated", "dropped", "empty"}`` as plain ints (for logging)."""
        return {"duplicated": self.duplicated, "dropped": self.dropped, "empty": self.empty}


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


def _random_u32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform uint32 keys of ``shape`` from the generator's raw 64-bit stream (two per draw)."""
    size = int(np.prod(shape))
    raw = rng.bit_generator.random_raw((size + 1) // 2)
    return raw.view(np.uint32)[:size].reshape(shape)


def _as_int_rows(x: Any) -> torch.Tensor:
    """``rollout_ids`` as a 1-D int64 tensor (values are checked by the caller)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 1:
        raise ValueError(f"rollout_ids must be 1-D (one id per row), got shape {tuple(t.shape)}")
    if t.dtype == torch.int64:
        return t
    return as_index_tensor("rollout_ids", t)


def _raise_bad_id(row: int, value: int, n_rollouts: int) -> None:
    raise ValueError(f"rollout_ids must lie in [0, n_rollouts={n_rollouts}); row {row} is {value}")


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def _fill_duplicate_drop(dd, slot, is_orig, u):
    """Copies drawn uniformly with replacement from the rollout's own rows."""
    return (u * dd) >> 32, None


def _fill_balanced(dd, slot, is_orig, u):
    """Copies spread as evenly as possible (a random permutation of the rows, cycled)."""
    keys = torch.where(is_orig, u, torch.full_like(u, 2**32))
    perm = torch.sort(keys, dim=1, stable=True).indices
    return torch.gather(perm, 1, torch.remainder(slot - dd, dd)), None


def _fill_mask(dd, slot, is_orig, u):
    """Pad rows cycling over the rollout's rows, with weight 0."""
    return torch.remainder(slot - dd, dd), is_orig.to(torch.float32).reshape(-1)


ALIGN_FILLS = {
    "duplicate_drop": _fill_duplicate_drop,
    "balanced": _fill_balanced,
    "mask": _fill_mask,
}
"""Alignment modes that fill rollouts with d_k < D (registry of the vectorized torch path):
``name -> fn(d (num_blocks, 1), slot (1, D), is_orig (num_blocks, D), u (num_blocks, D) uint32
keys) -> (positions of the added rows (num_blocks, D), row weights or None)``. Each has a twin in
the compiled kernel (``sim._kernels.MODE_CODES``); ``none`` (ragged, identity) needs neither."""
ALIGN_MODES = (*ALIGN_FILLS, "none")


def _positions_torch(
    dd: torch.Tensor, target: int, mode: str, u: torch.Tensor, over_keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Vectorized twin of ``align_kernel``: positions within each rollout ``(num_blocks, D)``."""
    device = dd.device
    dd = dd[:, None]
    slot = torch.arange(target, device=device)[None, :]
    is_orig = slot < dd
    extra, weight = ALIGN_FILLS[mode](dd, slot, is_orig, u)
    pos = torch.where(is_orig, slot.expand_as(extra), extra)
    over = torch.nonzero(dd[:, 0] > target).flatten()
    if len(over):
        sizes = dd[over, 0]
        owner = torch.repeat_interleave(torch.arange(len(over), device=device), sizes)
        offsets = torch.cumsum(sizes, 0) - sizes
        local = torch.arange(len(owner), device=device) - offsets[owner]
        order = torch.sort(owner * 2**32 + over_keys, stable=True).indices
        rank = local  # owner is sorted, so position - offset is the rank after sorting
        win = rank < target
        pos[over[owner[win]], rank[win]] = local[order][win]
    return pos, weight


def align(
    rollout_ids: Any,
    n_rollouts: int,
    target: int,
    mode: str = "duplicate_drop",
    seed: int | np.random.Generator | None = None,
    *,
    backend: str = "auto",
) -> Alignment:
    """Align the sub rows of each rollout to ``target`` rows.

    Args:
        rollout_ids: ``(num_rows,)`` int, ``rollout_ids[j]`` is the parent rollout of sub row j,
            in ``[0, n_rollouts)``. Rows need not be sorted (sorted input skips a sort).
        n_rollouts: number of rollouts (rollouts with no row are ``empty``).
        target: D >= 1.
        mode: one of :data:`ALIGN_MODES`.
        seed: int, ``numpy.random.Generator`` (advanced in place) or None (fresh entropy). The
            random numbers are drawn with numpy on the CPU, so both backends give the same rows.
        backend: ``auto`` (the compiled kernel for CPU tensors, torch otherwise), ``numba`` or
            ``torch`` (vectorized torch on the tensor's device).

    Returns:
        An :class:`Alignment` on the device of ``rollout_ids``.

    Example:
        >>> a = align([0, 0, 0, 2], n_rollouts=3, target=2, seed=0)
        >>> len(a.index), a.counts()
        (4, {'duplicated': 1, 'dropped': 1, 'empty': 1})
    """
    n_rollouts = _check_int("n_rollouts", n_rollouts, 0)
    target = _check_int("target", target, 1)
    check_choice("align mode", mode, ALIGN_MODES)
    check_choice("align backend", backend, ("auto", "numba", "torch"))
    rng = _rng(seed)
    rid = _as_int_rows(rollout_ids)
    if backend == "numba" or (backend == "auto" and rid.device.type == "cpu"):
        a = align_cpu(rid, n_rollouts, target, mode, rng)[0]
        return a if rid.device.type == "cpu" else a.to(rid.device)
    return _align_torch(rid, n_rollouts, target, mode, rng)


def _align_torch(
    rid: torch.Tensor, n_rollouts: int, target: int, mode: str, rng: np.random.Generator
) -> Alignment:
    """:func:`align` in vectorized torch on ``rid``'s device (arguments already checked)."""
    device = rid.device
    n = rid.numel()
    bad_rows = (rid < 0) | (rid >= n_rollouts)
    if n and bool(bad_rows.any()):
        bad = int(torch.nonzero(bad_rows)[0])
        _raise_bad_id(bad, int(rid[bad]), n_rollouts)
    d = torch.bincount(rid, minlength=n_rollouts)
    is_sorted = n < 2 or not bool((rid[1:] < rid[:-1]).any())
    d_np = d.cpu().numpy()
    r_np = np.flatnonzero(d_np)
    r_ids = torch.from_numpy(r_np).to(device)
    order = None if is_sorted else torch.argsort(rid, stable=True)
    empty = n_rollouts - len(r_np)
    if mode == "none":
        index = order if order is not None else torch.arange(n, device=device)
        return Alignment(index, r_ids, d, 0, 0, empty, target, mode)

    over = d_np > target
    u = _random_u32(rng, (len(r_np), target)) if mode != "mask" else np.zeros((0, 0), np.uint32)
    over_keys = _random_u32(rng, (int(d_np[over].sum()),))
    start = torch.cumsum(d, 0) - d
    u_t = torch.from_numpy(u.astype(np.int64)).to(device)
    if mode == "mask":
        u_t = torch.zeros(len(r_np), target, dtype=torch.int64, device=device)
    k_t = torch.from_numpy(over_keys.astype(np.int64)).to(device)
    pos, weight = _positions_torch(d[r_ids], target, mode, u_t, k_t)
    index = (start[r_ids][:, None] + pos).reshape(-1)
    if order is not None:
        index = order[index]
    return Alignment(
        index=index,
        blocks=r_ids,
        calls=d,
        duplicated=int((target - d_np[r_np][~over[r_np]]).sum()),
        dropped=int((d_np[over] - target).sum()),
        empty=empty,
        target=target,
        mode=mode,
        pad_weight=weight,
    )


_NO_U64 = np.zeros(0, np.uint64)
_NO_F32 = np.zeros(0, np.float32)
# no advantages: arguments of the fused (float32) signature, so both share one compiled kernel
_NO_FUSE = (_NO_F32, np.zeros(0, np.int64), 0, 0.0, 0, 0.0) + (np.zeros(0, np.int64),) * 2
_NO_FUSE += (_NO_F32, _NO_F32, np.zeros(0, np.bool_))


def _halves(x: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(x % 2**64), np.uint64(x >> 64)


def align_cpu(
    rid: torch.Tensor,
    n_rollouts: int,
    target: int,
    mode: str,
    rng: np.random.Generator,
    fuse: tuple | None = None,
) -> tuple[Alignment, tuple | None]:
    """:func:`align` on the CPU with the compiled kernel (arguments already checked), and with
    ``fuse = (rewards (num_rows,) float32 ndarray, rollout_groups (n_rollouts,) int64 ndarray,
    ddof, eps, scale code, std_floor)`` the per-group advantages in the same pass: then also
    ``(advantages (num_aligned,), ids, count, mean, std, zero_std, n_groups, finite)``, the
    statistics ``(n_groups,)`` in ascending group id; ``n_groups`` is -1 when the groups of the
    non-empty rollouts are not contiguous (nothing computed). Outputs come from ``POOL``."""
    rid_np = rid.cpu().numpy()
    n = len(rid_np)
    d = POOL.empty(n_rollouts, np.int64)
    is_sorted, bad, nb, top = count_kernel(rid_np, d)
    if bad >= 0:
        _raise_bad_id(bad, int(rid_np[bad]), n_rollouts)
    calls = torch.from_numpy(d)
    order = _NO_U64.view(np.int64)
    if not is_sorted:
        order = POOL.empty(n, np.int64)
        order_kernel(rid_np, d, order)
    if mode == "none":
        blocks = torch.from_numpy(np.flatnonzero(d))
        index = torch.from_numpy(order) if not is_sorted else torch.arange(n)
        return Alignment(index, blocks, calls, 0, 0, n_rollouts - nb, target, mode), None

    # random streams: `nb * target` fill keys (none for mask), then the over-target rows' keys
    n_fill = (nb * target + 1) // 2 if mode != "mask" else 0
    bg = rng.bit_generator
    pcg = type(bg) is np.random.PCG64
    u_raw = o_raw = _NO_U64
    if not pcg:  # other bit generators: pre-drawn, exactly as `random_raw` gives them
        u_raw = bg.random_raw(n_fill)
        o_raw = bg.random_raw((int(d[d > target].sum()) + 1) // 2)

    index = POOL.empty(nb * target, np.int64)
    weight = POOL.empty(nb * target, np.float32) if mode == "mask" else _NO_F32
    blocks = POOL.empty(nb, np.int64)
    adv_in, adv = _NO_FUSE, _NO_F32
    if fuse is not None:
        rewards = fuse[0]
        adv = POOL.empty(nb * target, rewards.dtype)
        stats = tuple(POOL.empty(nb, t) for t in (np.int64, np.int64, rewards.dtype, rewards.dtype))
        adv_in = (*fuse, *stats, POOL.empty(nb, np.bool_))
    with bg.lock:
        s = inc = 0
        if pcg:  # the kernel steps the generator itself, from its state
            state = bg.state
            s, inc = state["state"]["state"], state["state"]["inc"]
        o = pcg_advance(s, inc, n_fill)  # the over-target keys come after the fill keys
        streams = (pcg_jumps(inc, target + 1), *_halves(s), *_halves(o))
        out = (index, weight, blocks, fuse is not None, adv_in, adv)
        duplicated, dropped, n_groups, finite, o_lo, o_hi = align_kernel(
            d, order, target, MODE_CODES[mode], streams, u_raw, o_raw, top, *out
        )
        if pcg:
            state["state"]["state"] = int(o_lo) + (int(o_hi) << 64)
            bg.state = state
    a = Alignment(
        index=torch.from_numpy(index),
        blocks=torch.from_numpy(blocks),
        calls=calls,
        duplicated=int(duplicated),
        dropped=int(dropped),
        empty=n_rollouts - nb,
        target=target,
        mode=mode,
        pad_weight=torch.from_numpy(weight) if mode == "mask" else None,
    )
    if fuse is None:
        return a, None
    return a, (adv, *(x[: max(n_groups, 0)] for x in adv_in[6:]), n_groups, finite)


def target_from_counts(counts: Any, quantile: float = 0.99) -> int:
    """Smallest D with empirical ``P(d <= D) >= quantile`` (the paper's rule for D_max).

    Args:
        counts: ``(n_rollouts,)`` non-negative ints, d_k observed in a pilot run.
        quantile: in (0, 1].

    Returns:
        D >= 1 (1 when every count is 0).

    Example:
        >>> target_from_counts([1, 2, 2, 3, 9], quantile=0.8)  # P(d <= 3) = 4/5
        3
    """
    c = as_index_tensor("counts", counts)
    if c.numel() == 0:
        raise ValueError("counts must be non-empty (one d_k per pilot rollout)")
    q = float(quantile)
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
    x = torch.sort(c).values
    k = max(math.ceil(q * len(x) - 1e-9), 1)
    return max(int(x[k - 1]), 1)
