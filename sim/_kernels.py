"""Compiled CPU kernels (numba) for the two hot paths at paper scale: alignment and the sub-agent
advantages of aligned rows, fused into one pass over the rollouts when a group's rollouts are
contiguous. The vectorized torch code in ``sim/alignment.py`` and ``sim/advantages.py`` computes
exactly the same thing (same random numbers, same formulas) and is used for tensors on other
devices. Tests compare the two on many shapes.

Random keys: alignment takes uint32 keys from a numpy generator's raw 64-bit stream (low half
first): ``(num_blocks, target)`` keys for the fills, then the keys of the rows of rollouts over the
target. For numpy's default bit generator (PCG64) the kernel steps the generator itself, from its
state, so no key array is ever allocated; other bit generators hand over pre-drawn raw arrays.
Outputs are arrays the caller passes in (from :mod:`sim._pool`, so pages are reused across calls).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

MODE_CODES = {"duplicate_drop": 0, "balanced": 1, "mask": 2}
SCALE_CODES = {"group": 0, "batch": 1, "none": 2}

# ---------------------------------------------------------------------- PCG64 (numpy's generator)
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341  # numpy's PCG64 multiplier
_LOW32 = np.uint64(0xFFFFFFFF)


def pcg_advance(state: int, inc: int, delta: int) -> int:
    """PCG64 state after ``delta`` steps (Brown's LCG jump, as ``PCG64.advance``)."""
    mask = 2**128 - 1
    acc_mult, acc_plus, mult, plus = 1, 0, _PCG_MULT, inc
    while delta > 0:
        if delta & 1:
            acc_mult = acc_mult * mult & mask
            acc_plus = (acc_plus * mult + plus) & mask
        plus = (mult + 1) * plus & mask
        mult = mult * mult & mask
        delta >>= 1
    return (acc_mult * state + acc_plus) & mask


@intrinsic
def _umulhi(typingctx, a, b):  # pragma: no cover - compiled
    """High 64 bits of the 128-bit product of two uint64."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        prod = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(prod, ir.Constant(wide, 64)), ir.IntType(64))

    return sig, codegen


def pcg_jumps(inc: int, n: int) -> np.ndarray:
    """``(n + 1, 4)`` uint64 rows ``[A_lo, A_hi, C_lo, C_hi]``: k PCG64 steps map a state to
    ``A_k * state + C_k`` (mod 2**128), so any of the next n draws is one step away."""
    out = np.empty((n + 1, 4), np.uint64)
    a, c = 1, 0
    for k in range(n + 1):
        out[k] = [a % 2**64, a >> 64, c % 2**64, c >> 64]
        a, c = a * _PCG_MULT % 2**128, (c * _PCG_MULT + inc) % 2**128
    return out


@njit(inline="always")
def _jump(jumps, k, lo, hi):  # pragma: no cover - compiled
    """The PCG64 state ``k`` steps after ``(lo, hi)``: ``A_k * state + C_k`` (mod 2**128)."""
    a_lo, a_hi, c_lo, c_hi = jumps[k, 0], jumps[k, 1], jumps[k, 2], jumps[k, 3]
    m_lo = a_lo * lo
    m_hi = _umulhi(a_lo, lo) + a_lo * hi + a_hi * lo
    n_lo = m_lo + c_lo
    return n_lo, m_hi + c_hi + (np.uint64(1) if n_lo < m_lo else np.uint64(0))


@njit(inline="always")
def _output(lo, hi):  # pragma: no cover - compiled
    """PCG64's XSL-RR output of a state (numpy's ``pcg64_random_r`` after its step)."""
    x = hi ^ lo
    rot = hi >> np.uint64(58)
    return (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))


@njit(inline="always")
def _half(raw, t):  # pragma: no cover - compiled
    """uint32 key ``t`` of a stream from its raw draw ``t // 2`` (low half first), as int64."""
    return np.int64(raw >> np.uint64(32)) if t & 1 else np.int64(raw & _LOW32)


# ---------------------------------------------------------------------- alignment
@njit(cache=True, nogil=True)
def count_kernel(rollout_ids, d):  # pragma: no cover - compiled
    """d_k per rollout into ``d`` ``(n_rollouts,)``; returns whether ids are non-decreasing, the
    first row whose id is outside ``[0, n_rollouts)`` (-1 when none), the number of non-empty
    rollouts and the largest d_k. Sorted ids take one pass with no load-after-store chain: the
    end of each rollout's rows, then differences of consecutive ends."""
    d[:] = 0
    is_sorted = True
    prev = 0
    for j in range(rollout_ids.shape[0]):
        r = rollout_ids[j]
        if r < 0 or r >= d.shape[0]:
            return is_sorted, j, 0, 0
        d[r] = j + 1
        is_sorted &= r >= prev
        prev = r
    if not is_sorted:
        d[:] = 0
        for j in range(rollout_ids.shape[0]):
            d[rollout_ids[j]] += 1
    nb = 0
    top = 0
    end = 0
    for r in range(d.shape[0]):
        v = d[r]
        if is_sorted:
            d[r] = v - end if v > 0 else 0
            end = v if v > 0 else end
        nb += d[r] > 0
        top = max(top, d[r])
    return is_sorted, -1, nb, top


@njit(cache=True, nogil=True)
def order_kernel(rollout_ids, d, order):  # pragma: no cover - compiled
    """Stable counting sort: ``order`` ``(num_rows,)`` lists the rows by rollout, then row."""
    nxt = np.empty(d.shape[0], dtype=np.int64)
    acc = 0
    for r in range(d.shape[0]):
        nxt[r] = acc
        acc += d[r]
    for j in range(rollout_ids.shape[0]):
        r = rollout_ids[j]
        order[nxt[r]] = j
        nxt[r] += 1


@njit(cache=True, nogil=True)
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
def _finish_group(
    rewards, index, weight, lo, hi, buf, adv, ddof, eps, scale, std_floor
):  # pragma: no cover - compiled
    """Statistics and advantages of the group of aligned rows ``[lo, hi)`` (per-group or no
    scale), its values held in ``buf``: returns count, mean, std, zero flag, finite. (Indices
    are cast to unsigned: numba then skips the negative-index wraparound.)"""
    has_w = weight.shape[0] > 0
    n = hi - lo
    tot = 0.0
    c = 0.0
    for q in range(n):
        j = np.uint64(lo + q)
        v = np.float64(rewards[np.uint64(index[j])])
        buf[np.uint64(q)] = v
        if not has_w:
            tot += v
        elif weight[j] > 0:
            tot += v
            c += 1.0
    if not has_w:
        c = np.float64(n)
    m = tot / c if c > 0 else 0.0
    ss = 0.0
    for q in range(n):
        if not has_w or weight[np.uint64(lo + q)] > 0:
            dv = buf[np.uint64(q)] - m
            ss += dv * dv
    sd = np.sqrt(ss / (c - ddof)) if c - ddof > 0 else 0.0
    z = sd <= std_floor or c <= 1
    inv = 0.0 if z else (1.0 / (sd + eps) if scale == 0 else 1.0)
    for q in range(n):
        j = np.uint64(lo + q)
        adv[j] = (buf[np.uint64(q)] - m) * inv if not has_w or weight[j] > 0 else 0.0
    return c, m, sd, z, np.isfinite(tot)  # a NaN/inf read makes the group sum non-finite


@njit(inline="always")
def _close_group(adv_in, g, k, lo, hi, buf, index, weight, adv):  # pragma: no cover - compiled
    """Finish group ``g`` (aligned rows ``[lo, hi)``), its statistics at position ``k`` of
    ``adv_in``'s outputs; returns whether its rewards were finite and the (grown) buffer."""
    rewards, _, ddof, eps, scale, floor, ids, count, mean, std, zero = adv_in
    if hi - lo > buf.shape[0]:
        buf = np.empty(2 * (hi - lo))
    c, m, sd, z, fin = _finish_group(
        rewards, index, weight, lo, hi, buf, adv, ddof, eps, scale, floor
    )
    ids[k], count[k], mean[k], std[k], zero[k] = g, np.int64(c), m, sd, z
    return fin, buf


@njit(cache=True, nogil=True)
def _select(keys, n, k, out):  # pragma: no cover - compiled
    """``_smallest`` without data-dependent branches, for short rows: the rank of each of
    ``keys[:n]`` counted, positions of ranks < ``k`` into ``out[:k]`` (``out[k]``: scratch)."""
    for q in range(n):
        kq = keys[q]
        rank = 0
        for p in range(n):
            rank += (keys[p] < kq) | ((keys[p] == kq) & (p < q))
        out[min(rank, k)] = q


@njit(cache=True, nogil=True)
def _drop_keys(dk, pcg, jumps, lo, hi, o_raw, t0, raw, over):  # pragma: no cover - compiled
    """Keys ``t0 .. t0 + dk - 1`` of the over-target stream into ``over[:dk]``: PCG64 stepped
    from state ``(lo, hi)`` (or ``o_raw``), ``raw`` the last draw; returns the new lo, hi, raw."""
    for q in range(dk):
        t = t0 + q
        if t & 1 == 0:
            if pcg:
                lo, hi = _jump(jumps, 1, lo, hi)
                raw = _output(lo, hi)
            else:
                raw = o_raw[t >> 1]
        over[q] = _half(raw, t)
    return lo, hi, raw


@njit(inline="always")
def _fill_keys(keys, base, pcg, jumps, lo, hi, u_raw):  # pragma: no cover - compiled
    """All fill keys of the block at key ``base`` into ``keys``, from the stream state ``(lo,
    hi)`` at draw ``base // 2`` (or from ``u_raw``); returns the state at the next block."""
    target = keys.shape[0]
    p0 = base >> 1
    if target % 2 == 0:  # the block's keys are whole draws: step through them
        for k in range(target // 2):
            if pcg:
                lo, hi = _jump(jumps, 1, lo, hi)
                raw = _output(lo, hi)
            else:
                raw = u_raw[p0 + k]
            keys[2 * k] = np.int64(raw & _LOW32)
            keys[2 * k + 1] = np.int64(raw >> np.uint64(32))
        return lo, hi
    for s in range(target):  # a draw may straddle two blocks: each one jump from the state
        t = base + s
        m = (t >> 1) - p0
        if pcg:
            n_lo, n_hi = _jump(jumps, m + 1, lo, hi)
            raw = _output(n_lo, n_hi)
        else:
            raw = u_raw[p0 + m]
        keys[s] = _half(raw, t)
    return _jump(jumps, ((base + target) >> 1) - p0, lo, hi)


@njit(cache=True, nogil=True, error_model="numpy")
def align_kernel(
    d, order, target, mode, rng, u_raw, o_raw, top, index, weight, blocks, fuse, adv_in, adv
):  # pragma: no cover - compiled
    """Alignment of every rollout to ``target`` rows, with per-group advantages in the same pass.

    ``d``: ``(n_rollouts,)`` d_k; ``order``: ``(num_rows,)`` rows sorted by rollout, or empty when
    they already are; ``top``: the largest d_k. Random keys: ``u_raw`` / ``o_raw``, the raw draws
    of the fill keys and of the over-target rows' keys, or, when both are empty, PCG64 computed
    here: ``rng = (jumps (from pcg_jumps), fill stream state lo, hi, over stream state lo, hi)``
    (the over stream starts where the fill stream's draws end); a block that needs no fill key
    jumps over its draws. Writes ``index`` ``(num_blocks * target,)`` int64, ``weight``
    (``mask`` only; else empty) and ``blocks`` ``(num_blocks,)``.

    Advantages (when ``fuse``): ``adv_in = (rewards, rollout_groups, ddof, eps, scale,
    std_floor, ids, count, mean, std, zero)``, scale 0 (group) or 2 (none). A group is finished
    as soon as its last rollout is aligned, while its rows are in cache; the group ids must be
    non-decreasing over non-empty rollouts (otherwise the advantages are left undone and the
    group count is -1). Writes ``adv`` ``(num_blocks * target,)`` and the per-group statistics
    in ascending id order.

    Returns (duplicated, dropped, groups written, all rewards read finite, over stream state lo,
    hi).
    """
    jumps, c_lo, c_hi, o_lo, o_hi = rng
    groups = adv_in[1]
    pcg = u_raw.shape[0] == 0 and o_raw.shape[0] == 0
    has_order = order.shape[0] > 0
    keys = np.zeros(target, dtype=np.int64)
    over = np.empty(max(top, 1), dtype=np.int64)
    buf_k = np.empty(target, dtype=np.int64)
    buf_p = np.empty(target + 1, dtype=np.int64)
    buf = np.empty(4096)  # a group's reward values (grown on demand)
    o_key = 0  # next key of the over-target stream
    o_last = np.uint64(0)
    n_groups = 0
    finite = True
    cur = -1
    run = 0  # first block of the open group
    s0 = 0
    nb = 0
    duplicated = 0
    dropped = 0
    for r in range(d.shape[0]):
        dk = d[r]
        if dk == 0:
            continue
        base = nb * target
        if fuse and n_groups >= 0 and groups[r] != cur:
            if nb > 0 and groups[r] < cur:  # not contiguous: the caller computes them apart
                n_groups = -1
            elif nb > 0:
                fin, buf = _close_group(
                    adv_in, cur, n_groups, run * target, base, buf, index, weight, adv
                )
                finite &= fin
                n_groups += 1
            cur = groups[r]
            run = nb
        blocks[nb] = r
        keyed = mode != 2 and dk < target  # this block uses its fill keys
        if dk > target:  # keep `target` rows without replacement: the smallest random keys
            o_lo, o_hi, o_last = _drop_keys(dk, pcg, jumps, o_lo, o_hi, o_raw, o_key, o_last, over)
            o_key += dk
            if dk <= 64:
                _select(over, dk, target, buf_p)
            else:
                _smallest(over[:dk], target, buf_k, buf_p)
            dropped += dk - target
            for s in range(target):
                row = s0 + buf_p[s]
                index[base + s] = order[row] if has_order else row
                if mode == 2:
                    weight[base + s] = 1.0
        else:
            duplicated += target - dk
            if keyed:
                c_lo, c_hi = _fill_keys(keys, base, pcg, jumps, c_lo, c_hi, u_raw)
            # fixed trip counts (no branch on d_k), one loop per mode
            if mode == 0:  # copies uniform with replacement
                for s in range(target):
                    row = s0 + (s if s < dk else (keys[s] * dk) >> 32)
                    index[base + s] = order[row] if has_order else row
            elif mode == 1:  # copies cycle through a random permutation of the originals
                if keyed:
                    _smallest(keys[:dk], dk, buf_k, buf_p)
                for s in range(target):
                    row = s0 + (s if s < dk else buf_p[(s - dk) % dk])
                    index[base + s] = order[row] if has_order else row
            else:  # pad rows cycle through the originals, weight 0
                for s in range(target):
                    row = s0 + (s if s < dk else (s - dk) % dk)
                    index[base + s] = order[row] if has_order else row
                    weight[base + s] = 1.0 if s < dk else 0.0
        if pcg and mode != 2 and not keyed:
            c_lo, c_hi = _jump(jumps, ((base + target) >> 1) - (base >> 1), c_lo, c_hi)
        s0 += dk
        nb += 1
    if fuse and n_groups >= 0 and nb > 0:
        hi = nb * target
        fin, buf = _close_group(adv_in, cur, n_groups, run * target, hi, buf, index, weight, adv)
        finite &= fin
        n_groups += 1
    return duplicated, dropped, n_groups, finite, o_lo, o_hi


# ---------------------------------------------------------------------- advantages
@njit(cache=True, nogil=True)
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
def aligned_adv_kernel(
    rewards, index, weight, block_group, block_len, n_groups, ddof, eps, scale, std_floor, adv
):  # pragma: no cover - compiled
    """Group-relative advantages of aligned rows whose groups come per block of ``block_len``.

    ``weight``: ``(num_aligned,)`` or empty (all rows weigh 1). ``scale``: 0 group, 1 batch,
    2 none. Writes ``adv`` ``(num_aligned,)`` (dtype of rewards); returns per-group count, mean,
    std, zero flags, and whether every reward read was finite (the caller raises with row
    numbers when not).
    """
    n_blocks = block_group.shape[0]
    has_w = weight.shape[0] > 0
    count = np.zeros(n_groups)
    mean = np.zeros(n_groups)
    std = np.zeros(n_groups)
    zero = np.ones(n_groups, dtype=np.bool_)
    finite = True
    max_run = _max_run(block_group) if scale != 1 else -1
    if max_run > 0:  # per-group scale, contiguous groups: finish each group in cache
        buf = np.empty(max_run * block_len)
        i = 0
        while i < n_blocks:
            g = block_group[i]
            k = i
            while k < n_blocks and block_group[k] == g:
                k += 1
            lo, hi = i * block_len, k * block_len
            c, m, sd, z, fin = _finish_group(
                rewards, index, weight, lo, hi, buf, adv, ddof, eps, scale, std_floor
            )
            count[g], mean[g], std[g], zero[g] = c, m, sd, z
            finite &= fin
            i = k
        return count, mean, std, zero, finite
    vals = np.empty(n_blocks * block_len, dtype=np.float64)
    total = np.zeros(n_groups)
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
            adv[j] = (vals[j] - m) * inv if not has_w or weight[j] > 0 else 0.0
    return count, mean, std, zero, finite
