"""Group-relative advantages (DESIGN §3.3), vectorized over integer group ids.

``A_i = (R_i - mean_g) / (std_g + eps)`` for row i in group g (GRPO, Shao et al. 2024;
M-GRPO applies it per role, Hong et al. 2025). Conventions are explicit options because peer
libraries differ:

=========== ======================================================================================
option      meaning
=========== ======================================================================================
ddof        0: population std (the paper; default); 1: sample std (TRL, verl)
eps         added to the std in the denominator (default 1e-6)
scale       ``group``: own std (default); ``batch``: group mean, std over all rows of the call;
            ``none``: mean only, no division
std_floor   in every scale mode a group whose own std <= std_floor gets advantage exactly 0
            (constant groups carry no signal); a group of one row gets 0 (default 1e-6)
weights     optional, >= 0: rows of weight 0 (``mask`` padding) are left out of the statistics
            and get advantage 0; only whether a weight is 0 matters here
=========== ======================================================================================

Group ids are any non-negative integers (ragged, non-contiguous). Statistics use ``bincount``
scatter sums and a second centred pass for the variance; there is no Python loop over groups.

Aligned sub rows: :func:`aligned_group_advantages` takes an :class:`~sim.alignment.Alignment`
and never materialises the aligned rewards; :func:`align_advantages` aligns and computes the
advantages in one compiled pass over the rollouts (same numbers, same random draws).

Group-id builders: :func:`main_group_ids` (per query) and :func:`sub_group_ids` with the sub-agent
groupings ``per_query`` (after alignment, the default), ``per_invocation`` (the i-th call across the
K rollouts of a query, on unaligned rows, as in DSPy) and ``queue_window`` (consecutive windows of K
rows in arrival order, as the released code does). With several specialist roles, pass ``role_ids``
and groups are per (query, role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sim._checks import (
    as_float_tensor,
    as_index_tensor,
    check_choice,
    check_finite,
    check_same_length,
)
from sim._kernels import SCALE_CODES, aligned_adv_kernel
from sim._pool import POOL
from sim.alignment import (  # shared argument checks
    ALIGN_MODES,
    Alignment,
    _as_int_rows,
    _check_int,
    _rng,
    align,
    align_cpu,
)

__all__ = [
    "ADV_SCALES",
    "align_advantages",
    "aligned_group_advantages",
    "SUB_GROUPINGS",
    "GroupAdvantages",
    "GroupStats",
    "group_advantages",
    "main_group_ids",
    "sub_group_ids",
]


@dataclass(frozen=True)
class GroupStats:
    """Per-group statistics, one entry per group id present, ids ascending.

    Attributes:
        ids: ``(num_groups,)`` int64 group ids.
        count: ``(num_groups,)`` rows counted (weight > 0).
        mean: ``(num_groups,)`` reward mean over counted rows.
        std: ``(num_groups,)`` reward std (with ``ddof``); 0 when ``count - ddof <= 0``.
        zero_std: ``(num_groups,)`` bool, the group got advantage 0 (std <= floor or one row).
    """

    ids: torch.Tensor
    count: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    zero_std: torch.Tensor

    @property
    def frac_zero_std(self) -> float:
        """Fraction of groups whose advantages are all 0 (the ``frac_zero_std`` metric)."""
        return float(self.zero_std.float().mean()) if len(self.ids) else 0.0


@dataclass(frozen=True)
class GroupAdvantages:
    """Advantages ``(num_rows,)`` (dtype of the rewards) and the :class:`GroupStats`."""

    advantages: torch.Tensor
    stats: GroupStats


def _scale_group(r, keep, dense, std, ddof, eps):
    """Each group's own std (the paper)."""
    return (std + eps)[dense]


def _scale_batch(r, keep, dense, std, ddof, eps):
    """One std over all kept rows of the batch (the role's rows)."""
    kept = r if keep is None else r[keep > 0]
    m = kept.numel()
    bstd = torch.sqrt(((kept - kept.mean()) ** 2).sum() / (m - ddof)) if m - ddof > 0 else 0.0
    return torch.as_tensor(bstd, dtype=r.dtype, device=r.device) + eps


def _scale_none(r, keep, dense, std, ddof, eps):
    """Mean only (Dr. GRPO)."""
    return torch.ones((), dtype=r.dtype, device=r.device)


ADV_SCALE_FNS = {"group": _scale_group, "batch": _scale_batch, "none": _scale_none}
"""advantage scale registry: ``name -> fn(rewards, keep, dense group ids, per-group std, ddof,
eps) -> denominator`` (per row or a scalar)."""
ADV_SCALES = tuple(ADV_SCALE_FNS)


def _dense_ids(gid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Map ids to ``[0, G)``: the ids themselves when dense enough, else ``torch.unique``."""
    n = gid.numel()
    top = int(gid.max()) + 1
    if top <= 2 * n + 1024:
        return gid, None, top
    uniq, inverse = torch.unique(gid, return_inverse=True)
    return inverse, uniq, len(uniq)


def group_advantages(
    rewards: Any,
    group_ids: Any,
    weights: Any = None,
    ddof: int = 0,
    eps: float = 1e-6,
    scale: str = "group",
    std_floor: float = 1e-6,
) -> GroupAdvantages:
    """Group-relative advantages of ``rewards`` within the groups named by ``group_ids``.

    Args:
        rewards: ``(num_rows,)`` finite floats.
        group_ids: ``(num_rows,)`` non-negative integer group ids (any values, any order).
        weights: optional ``(num_rows,)`` >= 0; rows of weight 0 are left out and get 0.
        ddof: 0 (population std) or 1 (sample std).
        eps: >= 0, added to the std in the denominator.
        scale: ``group`` | ``batch`` | ``none``.
        std_floor: >= 0; groups with std <= std_floor get advantage 0.

    Returns:
        :class:`GroupAdvantages`; advantages are finite whenever the rewards are.

    Example:
        >>> r = group_advantages([0.0, 1.0, 1.0, 1.0], [0, 0, 7, 7])
        >>> [round(a, 4) for a in r.advantages.tolist()]  # group 7 is constant -> 0
        [-1.0, 1.0, 0.0, 0.0]
    """
    r = as_float_tensor("rewards", rewards)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D (num_rows,), got shape {tuple(r.shape)}")
    check_finite("rewards", r)
    gid = as_index_tensor("group_ids", group_ids, device=r.device)
    check_same_length(rewards=r, group_ids=gid)
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof!r}")
    if not float(eps) >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not float(std_floor) >= 0:
        raise ValueError(f"std_floor must be >= 0, got {std_floor}")
    check_choice("advantage scale", scale, ADV_SCALES)
    keep = None
    if weights is not None:
        w = as_float_tensor("weights", weights, device=r.device)
        check_same_length(rewards=r, weights=w)
        check_finite("weights", w)
        if bool((w < 0).any()):
            i = int(torch.nonzero(w < 0)[0])
            raise ValueError(f"weights must be >= 0; row {i} is {w[i].item()}")
        keep = (w > 0).to(r.dtype)

    n = r.numel()
    if n == 0:
        empty = torch.zeros(0, dtype=r.dtype, device=r.device)
        stats = GroupStats(
            gid, gid, empty, empty, torch.zeros(0, dtype=torch.bool, device=r.device)
        )
        return GroupAdvantages(empty, stats)

    dense, uniq, n_groups = _dense_ids(gid)
    present = torch.bincount(dense, minlength=n_groups) > 0
    if keep is None:
        count = torch.bincount(dense, minlength=n_groups).to(r.dtype)
        total = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, dense, r)
    else:
        count = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, dense, keep)
        total = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, dense, r * keep)
    mean = total / count.clamp(min=1)
    dev = r - mean[dense]
    sq = dev * dev if keep is None else dev * dev * keep
    ss = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, dense, sq)
    dof = count - ddof
    std = torch.where(dof > 0, torch.sqrt(ss / dof.clamp(min=1)), torch.zeros_like(ss))
    zero = (std <= std_floor) | (count <= 1)

    denom = ADV_SCALE_FNS[scale](r, keep, dense, std, ddof, eps)
    skip = zero[dense] if keep is None else zero[dense] | (keep == 0)
    adv = torch.where(skip, torch.zeros_like(r), dev / denom)

    ids = torch.nonzero(present).flatten()
    stats = GroupStats(
        ids=ids if uniq is None else uniq,
        count=count[ids].to(torch.int64),
        mean=mean[ids],
        std=std[ids],
        zero_std=zero[ids],
    )
    return GroupAdvantages(adv, stats)


def aligned_group_advantages(
    rewards: Any,
    alignment: Alignment,
    rollout_groups: Any,
    ddof: int = 0,
    eps: float = 1e-6,
    scale: str = "group",
    std_floor: float = 1e-6,
    *,
    backend: str = "auto",
) -> GroupAdvantages:
    """Advantages of aligned sub rows, each row in the group of its parent rollout.

    The same result as ``group_advantages(rewards[a.index], rollout_groups[a.rollout],
    weights=a.weight, ...)`` (the default ``per_query`` sub grouping when ``rollout_groups`` is the
    query of each rollout), without materialising the aligned rewards or group ids: after
    alignment every non-empty rollout is a block of D rows, so groups are known per block.

    Args:
        rewards: ``(num_rows,)`` rewards of the original (unaligned) sub rows.
        alignment: the :class:`~sim.alignment.Alignment` of those rows.
        rollout_groups: ``(n_rollouts,)`` non-negative group id of each rollout.
        ddof, eps, scale, std_floor: as in :func:`group_advantages`.
        backend: ``auto`` (compiled kernel for CPU tensors), ``numba`` or ``torch``.

    Returns:
        :class:`GroupAdvantages` with advantages ``(num_aligned,)`` in aligned-row order.
    """
    r = as_float_tensor("rewards", rewards)
    groups = _ids("rollout_groups", rollout_groups, device=r.device)
    if groups.numel() != alignment.calls.numel():
        raise ValueError(
            f"rollout_groups has {groups.numel()} entries but the alignment has "
            f"{alignment.calls.numel()} rollouts"
        )
    if r.dim() != 1 or r.numel() != int(alignment.calls.sum()):
        raise ValueError(
            f"rewards must be 1-D with one entry per original sub row "
            f"({int(alignment.calls.sum())}), got shape {tuple(r.shape)}"
        )
    check_choice("advantage backend", backend, ("auto", "numba", "torch"))
    use_numba = backend == "numba" or (backend == "auto" and r.device.type == "cpu")
    if alignment.mode == "none" or not use_numba or r.numel() == 0:
        index = alignment.index.to(r.device)
        return group_advantages(
            r[index],
            groups[alignment.rollout.to(r.device)],
            weights=alignment.weight.to(r.device),
            ddof=ddof,
            eps=eps,
            scale=scale,
            std_floor=std_floor,
        )
    _check_adv_options(ddof, eps, scale, std_floor)
    block_groups = groups[alignment.blocks.to(r.device)]
    dense, uniq, n_groups = _dense_ids(block_groups)
    rewards = r.cpu().numpy()
    adv = POOL.empty(len(alignment.index), rewards.dtype)
    count, mean, std, zero, finite = aligned_adv_kernel(
        rewards,
        alignment.index.cpu().numpy(),
        (
            alignment.pad_weight.cpu().numpy()
            if alignment.pad_weight is not None
            else np.zeros(0, np.float32)
        ),
        dense.cpu().numpy(),
        alignment.target,
        n_groups,
        ddof,
        float(eps),
        SCALE_CODES[scale],
        float(std_floor),
        adv,
    )
    if not finite:
        check_finite("rewards", r)  # names the offending rows
    present = np.bincount(dense.cpu().numpy(), minlength=n_groups) > 0
    ids = np.flatnonzero(present)
    dev = r.device
    stats = GroupStats(
        ids=torch.from_numpy(ids if uniq is None else uniq.cpu().numpy()).to(dev),
        count=torch.from_numpy(count[ids].astype(np.int64)).to(dev),
        mean=torch.from_numpy(mean[ids]).to(dev, r.dtype),
        std=torch.from_numpy(std[ids]).to(dev, r.dtype),
        zero_std=torch.from_numpy(zero[ids]).to(dev),
    )
    return GroupAdvantages(torch.from_numpy(adv).to(dev), stats)


def _ids(name: str, x: Any, device: torch.device | None = None) -> torch.Tensor:
    """``as_index_tensor``, an int64 tensor checked by its minimum alone (at a million rows the
    elementwise masks of the general check cost more than the math)."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.int64 and x.dim() == 1:
        if x.numel() == 0 or int(x.min()) >= 0:
            return x if device is None else x.to(device)
    return as_index_tensor(name, x, device=device)


def _check_adv_options(ddof: int, eps: float, scale: str, std_floor: float) -> None:
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof!r}")
    if not float(eps) >= 0 or not float(std_floor) >= 0:
        raise ValueError(f"eps and std_floor must be >= 0, got {eps}, {std_floor}")
    check_choice("advantage scale", scale, ADV_SCALES)


def align_advantages(
    rewards: Any,
    rollout_ids: Any,
    n_rollouts: int,
    target: int,
    rollout_groups: Any,
    mode: str = "duplicate_drop",
    seed: int | np.random.Generator | None = None,
    ddof: int = 0,
    eps: float = 1e-6,
    scale: str = "group",
    std_floor: float = 1e-6,
    *,
    backend: str = "auto",
) -> tuple[Alignment, GroupAdvantages]:
    """Alignment and the advantages of the aligned rows, in one pass over the rollouts.

    The same result, bit for bit and with the same random draws, as ``a = align(rollout_ids,
    n_rollouts, target, mode, seed)`` followed by ``aligned_group_advantages(rewards, a,
    rollout_groups, ...)``. One pass when the groups of the rollouts are contiguous (ids
    non-decreasing over rollouts: the ``per_query`` grouping, ``rollout // K``), the scale is
    ``group`` or ``none``, the rewards are float32 and on the CPU; the two calls otherwise.

    Args:
        rewards: ``(num_rows,)`` rewards of the original (unaligned) sub rows.
        rollout_ids, n_rollouts, target, mode, seed: as in :func:`~sim.alignment.align`.
        rollout_groups: ``(n_rollouts,)`` non-negative group id of each rollout.
        ddof, eps, scale, std_floor: as in :func:`group_advantages`.
        backend: ``auto`` (compiled kernel for CPU tensors), ``numba`` or ``torch``.

    Returns:
        ``(alignment, advantages)``; advantages ``(num_aligned,)`` in aligned-row order.

    Example:
        >>> a, adv = align_advantages([0.0, 1.0, 1.0, 0.0], [0, 0, 1, 1], 2, 2, [0, 0], seed=0)
        >>> a.index.tolist(), [round(x, 4) for x in adv.advantages.tolist()]
        ([0, 1, 2, 3], [-1.0, 1.0, 1.0, -1.0])
    """
    check_choice("advantage backend", backend, ("auto", "numba", "torch"))
    r = as_float_tensor("rewards", rewards)
    rid = _as_int_rows(rollout_ids)
    groups = _ids("rollout_groups", rollout_groups, device=r.device)
    fusable = (
        (backend == "numba" or (backend == "auto" and r.device.type == "cpu"))
        and rid.device.type == "cpu"
        and r.dtype == torch.float32  # the trainer's rewards; one compiled kernel
        and mode != "none"
        and scale != "batch"
        and r.dim() == 1
        and r.numel() == rid.numel() > 0
        and groups.numel() == n_rollouts
    )
    if not fusable:
        a = align(rid, n_rollouts, target, mode, seed, backend=backend)
        kw = {"ddof": ddof, "eps": eps, "scale": scale, "std_floor": std_floor}
        return a, aligned_group_advantages(r, a, groups, backend=backend, **kw)
    n_rollouts = _check_int("n_rollouts", n_rollouts, 0)
    target = _check_int("target", target, 1)
    check_choice("align mode", mode, ALIGN_MODES)
    _check_adv_options(ddof, eps, scale, std_floor)
    fuse = (r.numpy(), groups.numpy(), ddof, float(eps), SCALE_CODES[scale], float(std_floor))
    a, out = align_cpu(rid, n_rollouts, target, mode, _rng(seed), fuse)
    adv, ids, count, mean, std, zero, n_groups, finite = out
    if n_groups < 0:  # groups interleave: the generic kernel over the aligned rows
        return a, aligned_group_advantages(r, a, groups, ddof, eps, scale, std_floor)
    if not finite:
        check_finite("rewards", r)  # names the offending rows
    stats = GroupStats(*(torch.from_numpy(x) for x in (ids, count, mean, std, zero)))
    return a, GroupAdvantages(torch.from_numpy(adv), stats)


def main_group_ids(query_ids: Any) -> torch.Tensor:
    """Main-agent groups: one per query (its K rollouts). ``(num_rows,)`` -> ``(num_rows,)``."""
    return as_index_tensor("query_ids", query_ids)


def sub_group_ids(
    grouping: str,
    query_ids: Any,
    *,
    role_ids: Any = None,
    invocation: Any = None,
    arrival: Any = None,
    window: int | None = None,
) -> torch.Tensor:
    """Group ids ``(num_rows,)`` for sub-agent rows under one of :data:`SUB_GROUPINGS`.

    Args:
        grouping: ``per_query`` (rows of a query pooled; pass the *aligned* rows),
            ``per_invocation`` (the i-th call of each of the K rollouts of a query; unaligned
            rows), or ``queue_window`` (consecutive windows of ``window`` rows in arrival order).
        query_ids: ``(num_rows,)`` query id of each row (unused by ``queue_window``).
        role_ids: optional ``(num_rows,)`` specialist role id; groups never mix roles.
        invocation: ``(num_rows,)`` call index within its rollout (``per_invocation``).
        arrival: ``(num_rows,)`` arrival key (smaller arrives first; ties keep row order) for
            ``queue_window``.
        window: window length (K) for ``queue_window``.
    """
    check_choice("sub grouping", grouping, SUB_GROUP_ID_FNS)
    q = as_index_tensor("query_ids", query_ids)
    n = q.numel()
    if role_ids is None:
        role = torch.zeros(n, dtype=torch.int64, device=q.device)
    else:
        role = as_index_tensor("role_ids", role_ids, device=q.device)
        check_same_length(query_ids=q, role_ids=role)
    n_roles = int(role.max()) + 1 if n else 1

    return SUB_GROUP_ID_FNS[grouping](q, role, n_roles, invocation, arrival, window)


def _ids_per_query(q, role, n_roles, invocation, arrival, window):
    """Rows of a query pooled (pass the aligned rows)."""
    return q * n_roles + role


def _ids_per_invocation(q, role, n_roles, invocation, arrival, window):
    """The i-th call of each of the K rollouts of a query (unaligned rows, as in DSPy)."""
    if invocation is None:
        raise ValueError("grouping 'per_invocation' needs invocation (call index per row)")
    inv = as_index_tensor("invocation", invocation, device=q.device)
    check_same_length(query_ids=q, invocation=inv)
    n_inv = int(inv.max()) + 1 if q.numel() else 1
    return (q * n_inv + inv) * n_roles + role


def _ids_queue_window(q, role, n_roles, invocation, arrival, window):
    """Consecutive windows of ``window`` rows in arrival order (the released code)."""
    n = q.numel()
    if window is None or isinstance(window, bool) or int(window) < 1:
        raise ValueError(f"grouping 'queue_window' needs window >= 1 (K), got {window!r}")
    if arrival is None:
        raise ValueError("grouping 'queue_window' needs arrival (arrival order key per row)")
    arr = torch.as_tensor(arrival, device=q.device)
    if arr.dim() != 1 or arr.numel() != n:
        raise ValueError(f"arrival must be 1-D with {n} entries, got shape {tuple(arr.shape)}")
    by_arrival = torch.argsort(arr, stable=True)
    order = by_arrival[torch.argsort(role[by_arrival], stable=True)]  # role, then arrival
    role_sorted = role[order]
    role_start = torch.cumsum(torch.bincount(role_sorted, minlength=n_roles), 0)
    role_start = role_start - torch.bincount(role_sorted, minlength=n_roles)
    pos = torch.arange(n, device=q.device) - role_start[role_sorted]
    out = torch.empty(n, dtype=torch.int64, device=q.device)
    out[order] = (pos // int(window)) * n_roles + role_sorted
    return out


SUB_GROUP_ID_FNS = {
    "per_query": _ids_per_query,
    "per_invocation": _ids_per_invocation,
    "queue_window": _ids_queue_window,
}
"""sub-agent grouping registry: ``name -> fn(query ids, role ids, n_roles, invocation, arrival,
window) -> group ids (num_rows,)``."""
SUB_GROUPINGS = tuple(SUB_GROUP_ID_FNS)
