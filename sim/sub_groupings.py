"""Sub-agent advantage groupings (``algo.sub_grouping``), selected by name from
:data:`SUB_ADVANTAGES` (a registry): how the aligned sub-agent rows of a step are grouped for
their group-relative advantages. Used by :func:`sim.update.prepare_sub`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sim.advantages import GroupAdvantages, aligned_group_advantages, group_advantages
from sim.advantages import sub_group_ids as _sub_group_ids
from sim.alignment import Alignment
from sim.rollout import RolloutBatch

__all__ = ["SUB_ADVANTAGES", "register_sub_advantages"]

SubGrouping = Callable[..., tuple[torch.Tensor, GroupAdvantages]]
SUB_ADVANTAGES: dict[str, SubGrouping] = {}
"""name -> ``fn(r, alignment, traj, batch, **adv_kw) -> (aligned advantages, result)``"""


def register_sub_advantages(name: str) -> Callable[[SubGrouping], SubGrouping]:
    """Decorator adding a sub-agent advantage grouping (``algo.sub_grouping``)."""

    def deco(fn: SubGrouping) -> SubGrouping:
        SUB_ADVANTAGES[name] = fn
        return fn

    return deco


@register_sub_advantages("per_query")
def _per_query(r, a: Alignment, traj, batch: RolloutBatch, **kw):
    """All aligned sub rows of a query pooled (the paper), without materialising them."""
    n_roll, K = len(batch.correct), batch.group_size
    res = aligned_group_advantages(r, a, torch.arange(n_roll) // K, **kw)
    return res.advantages, res


@register_sub_advantages("per_invocation")
def _per_invocation(r, a: Alignment, traj, batch: RolloutBatch, **kw):
    """The i-th call across the K rollouts of a query (unaligned rows, as in DSPy)."""
    query = torch.from_numpy(traj.rollout) // batch.group_size
    gid = _sub_group_ids("per_invocation", query, invocation=torch.from_numpy(traj.invocation))
    res = group_advantages(r, gid, **kw)
    return res.advantages[a.index], res


@register_sub_advantages("queue_window")
def _queue_window(r, a: Alignment, traj, batch: RolloutBatch, **kw):
    """Windows of K sub rows in arrival order: rollouts in the order they finished, calls in
    order (the released code)."""
    K = batch.group_size
    query = torch.from_numpy(traj.rollout) // K
    finish_rank = np.argsort(np.argsort(batch.sim_time, kind="stable"), kind="stable")
    rollout = torch.from_numpy(traj.rollout)
    arrival = torch.from_numpy(finish_rank)[rollout] * 10_000 + torch.from_numpy(traj.finish_order)
    gid = _sub_group_ids("queue_window", query, arrival=arrival, window=K)
    res = group_advantages(r, gid, **kw)
    return res.advantages[a.index], res
