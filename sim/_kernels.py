"""Compiled CPU kernels (numba) for the two hot paths at paper scale: alignment and the sub-agent
advantages of aligned rows. Each is one fused pass over the rows; the vectorized torch code in
``sim/alignment.py`` and ``sim/advantages.py`` computes exactly the same thing (same random numbers,
same formulas) and is used for tensors on other devices. Tests compare the two on many shapes."""

from __future__ import annotations

import numpy as np
from numba import njit

MODE_CODES = {"duplicate_drop": 0, "balanced": 1, "mask": 2}


@njit(cache=True, nogil=True)
def align_kernel(start, d, r_ids, target, mode, u, over_keys):  # pragma: no cover - compiled
    """Aligned positions (rollout-sorted order) ``(len(r_ids) * target,)`` and weights.

    ``u``: ``(len(r_ids), target)`` uint32 random keys; ``over_keys``: uint32 keys for the rows of
    rollouts with d_k > target, concatenated in rollout order. Weights are returned only for
    ``mask`` (mode 2); otherwise an empty array.
    """
    n_blocks = r_ids.shape[0]
    index = np.empty(n_blocks * target, dtype=np.int64)
    weight = np.ones(n_blocks * target if mode == 2 else 0, dtype=np.float32)
    ko = 0
    for i in range(n_blocks):
        r = r_ids[i]
        dk = d[r]
        s0 = start[r]
        base = i * target
        if dk > target:
            order = np.argsort(over_keys[ko : ko + dk], kind="mergesort")
            for s in range(target):
                index[base + s] = s0 + order[s]
            ko += dk
            continue
        for s in range(dk):
            index[base + s] = s0 + s
        if dk == target:
            continue
        if mode == 0:
            for s in range(dk, target):
                index[base + s] = s0 + ((np.int64(u[i, s]) * dk) >> 32)
        elif mode == 1:
            perm = np.argsort(u[i, :dk], kind="mergesort")
            for s in range(dk, target):
                index[base + s] = s0 + perm[(s - dk) % dk]
        else:
            for s in range(dk, target):
                index[base + s] = s0 + (s - dk) % dk
                weight[base + s] = 0.0
    return index, weight


@njit(cache=True, nogil=True)
def aligned_adv_kernel(
    rewards, index, weight, block_group, block_len, n_groups, ddof, eps, scale, std_floor
):  # pragma: no cover - compiled
    """Group-relative advantages of aligned rows whose groups come per block of ``block_len``.

    ``weight``: ``(num_aligned,)`` or empty (all rows weigh 1). ``scale``: 0 group, 1 batch,
    2 none. Returns advantages (dtype of rewards) and per-group count, mean, std, zero flags.
    """
    n_blocks = block_group.shape[0]
    has_w = weight.shape[0] > 0
    vals = np.empty(n_blocks * block_len, dtype=np.float64)
    total = np.zeros(n_groups)
    count = np.zeros(n_groups)
    for i in range(n_blocks):
        g = block_group[i]
        acc = 0.0
        c = 0.0
        for j in range(i * block_len, (i + 1) * block_len):
            v = np.float64(rewards[index[j]])
            vals[j] = v
            if not has_w or weight[j] > 0:
                acc += v
                c += 1.0
        total[g] += acc
        count[g] += c
    mean = np.zeros(n_groups)
    for g in range(n_groups):
        if count[g] > 0:
            mean[g] = total[g] / count[g]
    ss = np.zeros(n_groups)
    for i in range(n_blocks):
        g = block_group[i]
        m = mean[g]
        acc = 0.0
        for j in range(i * block_len, (i + 1) * block_len):
            if not has_w or weight[j] > 0:
                dv = vals[j] - m
                acc += dv * dv
        ss[g] += acc
    std = np.zeros(n_groups)
    zero = np.zeros(n_groups, dtype=np.bool_)
    all_n = 0.0
    all_sum = 0.0
    for g in range(n_groups):
        if count[g] - ddof > 0:
            std[g] = np.sqrt(ss[g] / (count[g] - ddof))
        zero[g] = std[g] <= std_floor or count[g] <= 1
        all_n += count[g]
        all_sum += total[g]
    denom_batch = 1.0
    if scale == 1:
        gm = all_sum / max(all_n, 1.0)
        bss = 0.0
        for g in range(n_groups):
            dm = mean[g] - gm
            bss += ss[g] + count[g] * dm * dm
        denom_batch = (np.sqrt(bss / (all_n - ddof)) if all_n - ddof > 0 else 0.0) + eps
    adv = np.empty(n_blocks * block_len, dtype=rewards.dtype)
    for i in range(n_blocks):
        g = block_group[i]
        m = mean[g]
        if zero[g]:
            inv = 0.0
        elif scale == 0:
            inv = 1.0 / (std[g] + eps)
        elif scale == 1:
            inv = 1.0 / denom_batch
        else:
            inv = 1.0
        for j in range(i * block_len, (i + 1) * block_len):
            if has_w and weight[j] <= 0:
                adv[j] = 0.0
            else:
                adv[j] = (vals[j] - m) * inv
    return adv, count, mean, std, zero


@njit(cache=True, nogil=True)
def count_kernel(rollout_ids, n_rollouts):  # pragma: no cover - compiled
    """One pass: d_k per rollout ``(n_rollouts,)``, whether ids are non-decreasing, and the first
    row whose id is outside ``[0, n_rollouts)`` (-1 when none)."""
    d = np.zeros(n_rollouts, dtype=np.int64)
    is_sorted = True
    prev = -1
    for j in range(rollout_ids.shape[0]):
        r = rollout_ids[j]
        if r < 0 or r >= n_rollouts:
            return d, is_sorted, j
        d[r] += 1
        if r < prev:
            is_sorted = False
        prev = r
    return d, is_sorted, -1
