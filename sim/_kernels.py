"""Compiled CPU kernels (numba) for the two hot paths at paper scale: alignment and the sub-agent
advantages of aligned rows. Each is one fused pass over the rows; the vectorized torch code in
``sim/alignment.py`` and ``sim/advantages.py`` computes exactly the same thing (same random numbers,
same formulas) and is used for tensors on other devices. Tests compare the two on many shapes."""

from __future__ import annotations

import numpy as np
from numba import njit

MODE_CODES = {"duplicate_drop": 0, "balanced": 1, "mask": 2}


@njit(cache=True, nogil=True, error_model="numpy")
def _smallest(keys, k, buf_k, buf_p):  # pragma: no cover - compiled
    """Positions of the ``k`` smallest ``keys`` in ascending (key, position) order, i.e. the first
    ``k`` of a stable argsort, by insertion into ``buf`` (no allocation)."""
    cnt = 0
    for p in range(keys.shape[0]):
        key = np.int64(keys[p])
        if cnt == k and key >= buf_k[k - 1]:
            continue
        j = cnt if cnt < k else k - 1
        while j > 0 and buf_k[j - 1] > key:
            buf_k[j] = buf_k[j - 1]
            buf_p[j] = buf_p[j - 1]
            j -= 1
        buf_k[j] = key
        buf_p[j] = p
        if cnt < k:
            cnt += 1
    return cnt


@njit(cache=True, nogil=True, error_model="numpy")
def align_kernel(start, d, r_ids, target, mode, u, over_keys):  # pragma: no cover - compiled
    """Aligned positions (rollout-sorted order) ``(len(r_ids) * target,)`` and weights.

    ``u``: ``(len(r_ids), target)`` uint32 random keys; ``over_keys``: uint32 keys for the rows of
    rollouts with d_k > target, concatenated in rollout order. Weights are returned only for
    ``mask`` (mode 2); otherwise an empty array.
    """
    n_blocks = r_ids.shape[0]
    index = np.empty(n_blocks * target, dtype=np.int64)
    weight = np.ones(n_blocks * target if mode == 2 else 0, dtype=np.float32)
    buf_k = np.empty(target, dtype=np.int64)
    buf_p = np.empty(target, dtype=np.int64)
    ko = 0
    for i in range(n_blocks):
        r = r_ids[i]
        dk = d[r]
        s0 = start[r]
        base = i * target
        if dk > target:  # keep `target` rows without replacement: the smallest random keys
            _smallest(over_keys[ko : ko + dk], target, buf_k, buf_p)
            for s in range(target):
                index[base + s] = s0 + buf_p[s]
            ko += dk
            continue
        if mode == 0 and dk < target:  # draw every slot (branch-free), originals overwrite below
            for s in range(target):
                index[base + s] = s0 + ((np.int64(u[i, s]) * dk) >> 32)
        for s in range(dk):
            index[base + s] = s0 + s
        if dk == target or mode == 0:
            continue
        if mode == 1:  # a random permutation of the originals; copies cycle through it
            _smallest(u[i, :dk], dk, buf_k, buf_p)
            for s in range(dk, target):
                index[base + s] = s0 + buf_p[(s - dk) % dk]
        else:
            for s in range(dk, target):
                index[base + s] = s0 + (s - dk) % dk
                weight[base + s] = 0.0
    return index, weight


@njit(cache=True, nogil=True, error_model="numpy")
def _max_run(block_group):  # pragma: no cover - compiled
    """Longest run of equal group ids, or -1 if the ids ever decrease (groups not contiguous)."""
    best = 0
    run = 0
    for i in range(block_group.shape[0]):
        if i > 0 and block_group[i] < block_group[i - 1]:
            return -1
        run = run + 1 if i > 0 and block_group[i] == block_group[i - 1] else 1
        best = max(best, run)
    return best


@njit(cache=True, nogil=True, error_model="numpy")
def _adv_runs(
    rewards, index, weight, block_group, block_len, n_groups, ddof, eps, scale, std_floor, max_run
):  # pragma: no cover - compiled
    """``aligned_adv_kernel`` when each group's blocks are contiguous and the scale is per
    group: every group is finished while its <= max_run * block_len values sit in a small
    buffer, so memory is read once and written once."""
    n_blocks = block_group.shape[0]
    has_w = weight.shape[0] > 0
    adv = np.empty(n_blocks * block_len, dtype=rewards.dtype)
    count = np.zeros(n_groups)
    mean = np.zeros(n_groups)
    std = np.zeros(n_groups)
    zero = np.ones(n_groups, dtype=np.bool_)
    buf = np.empty(max_run * block_len)
    finite = True
    i = 0
    while i < n_blocks:
        g = block_group[i]
        k = i
        while k < n_blocks and block_group[k] == g:
            k += 1
        lo = i * block_len
        hi = k * block_len
        tot = 0.0
        c = 0.0
        if has_w:
            for j in range(lo, hi):
                v = np.float64(rewards[index[j]])
                buf[j - lo] = v
                if weight[j] > 0:
                    tot += v
                    c += 1.0
        else:
            for j in range(lo, hi):
                v = np.float64(rewards[index[j]])
                buf[j - lo] = v
                tot += v
            c = np.float64(hi - lo)
        finite &= np.isfinite(tot)  # a NaN/inf read makes the group sum non-finite
        m = tot / c if c > 0 else 0.0
        ss = 0.0
        if has_w:
            for j in range(lo, hi):
                if weight[j] > 0:
                    dv = buf[j - lo] - m
                    ss += dv * dv
        else:
            for j in range(hi - lo):
                dv = buf[j] - m
                ss += dv * dv
        sd = np.sqrt(ss / (c - ddof)) if c - ddof > 0 else 0.0
        z = sd <= std_floor or c <= 1
        inv = 0.0 if z else (1.0 / (sd + eps) if scale == 0 else 1.0)
        if has_w:
            for j in range(lo, hi):
                adv[j] = (buf[j - lo] - m) * inv if weight[j] > 0 else 0.0
        else:
            for j in range(lo, hi):
                adv[j] = (buf[j - lo] - m) * inv
        count[g] = c
        mean[g] = m
        std[g] = sd
        zero[g] = z
        i = k
    return adv, count, mean, std, zero, finite


@njit(cache=True, nogil=True, error_model="numpy")
def aligned_adv_kernel(
    rewards, index, weight, block_group, block_len, n_groups, ddof, eps, scale, std_floor
):  # pragma: no cover - compiled
    """Group-relative advantages of aligned rows whose groups come per block of ``block_len``.

    ``weight``: ``(num_aligned,)`` or empty (all rows weigh 1). ``scale``: 0 group, 1 batch,
    2 none. Returns advantages (dtype of rewards), per-group count, mean, std, zero flags, and
    whether every reward read was finite (the caller raises with row numbers when not).
    """
    if scale != 1:  # per-group scale: finish each group in cache when its blocks are contiguous
        max_run = _max_run(block_group)
        if max_run > 0:
            return _adv_runs(
                rewards,
                index,
                weight,
                block_group,
                block_len,
                n_groups,
                ddof,
                eps,
                scale,
                std_floor,
                max_run,
            )
    n_blocks = block_group.shape[0]
    has_w = weight.shape[0] > 0
    vals = np.empty(n_blocks * block_len, dtype=np.float64)
    finite = True
    total = np.zeros(n_groups)
    count = np.zeros(n_groups)
    for i in range(n_blocks):
        g = block_group[i]
        acc = 0.0
        c = 0.0
        for j in range(i * block_len, (i + 1) * block_len):
            v = np.float64(rewards[index[j]])
            finite &= np.isfinite(v)
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
        if has_w:
            for j in range(i * block_len, (i + 1) * block_len):
                adv[j] = (vals[j] - m) * inv if weight[j] > 0 else 0.0
        else:
            for j in range(i * block_len, (i + 1) * block_len):
                adv[j] = (vals[j] - m) * inv
    return adv, count, mean, std, zero, finite


@njit(cache=True, nogil=True, error_model="numpy")
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


@njit(cache=True, nogil=True, error_model="numpy")
def plan_kernel(d, target):  # pragma: no cover - compiled
    """One pass over d_k: row starts ``(n_rollouts,)``, non-empty rollout ids, the number of rows
    of rollouts over the target, and the duplicated / dropped / empty counts."""
    n = d.shape[0]
    start = np.empty(n, dtype=np.int64)
    r_ids = np.empty(n, dtype=np.int64)
    acc = 0
    nb = 0
    over_rows = 0
    duplicated = 0
    dropped = 0
    for r in range(n):
        dk = d[r]
        start[r] = acc
        acc += dk
        if dk > 0:
            r_ids[nb] = r
            nb += 1
            if dk > target:
                over_rows += dk
                dropped += dk - target
            else:
                duplicated += target - dk
    return start, r_ids[:nb], over_rows, duplicated, dropped, n - nb
