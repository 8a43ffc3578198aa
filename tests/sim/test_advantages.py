"""Rules of sim/advantages.py (DESIGN §3.3)."""

from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.advantages import (
    align_advantages,
    aligned_group_advantages,
    group_advantages,
    main_group_ids,
    sub_group_ids,
)
from sim.alignment import align


@st.composite
def grouped_rewards(draw, min_rows=1):
    """float64 rewards with sparse, unordered non-negative group ids."""
    n = draw(st.integers(min_rows, 40))
    labels = draw(st.lists(st.sampled_from([0, 3, 7, 10**6, 2**40]), min_size=n, max_size=n))
    rewards = draw(
        st.lists(
            st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 3)), min_size=n, max_size=n
        )
    )
    return torch.tensor(rewards, dtype=torch.float64), torch.tensor(labels)


def loop_reference(r, g, w=None, ddof=0, eps=1e-6, scale="group", floor=1e-6):
    """Plain per-group loop with the same rules, to compare the vectorized code against."""
    r, g = r.tolist(), g.tolist()
    w = [1.0] * len(r) if w is None else w.tolist()
    rows = defaultdict(list)
    for i, (gi, wi) in enumerate(zip(g, w, strict=True)):
        if wi > 0:
            rows[gi].append(i)
    kept = [r[i] for i in range(len(r)) if w[i] > 0]
    bstd = np.std(kept, ddof=ddof) if len(kept) - ddof > 0 else 0.0
    out = [0.0] * len(r)
    for idx in rows.values():
        vals = np.array([r[i] for i in idx])
        std = np.std(vals, ddof=ddof) if len(vals) - ddof > 0 else 0.0
        if std <= floor or len(vals) <= 1:
            continue
        denom = {"group": std + eps, "batch": bstd + eps, "none": 1.0}[scale]
        for i in idx:
            out[i] = (r[i] - vals.mean()) / denom
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=150, deadline=None)
@given(data=grouped_rewards())
def test_per_group_sum_zero_and_unit_population_std(data):
    r, g = data
    a = group_advantages(r, g).advantages
    for label in g.unique():
        sel = g == label
        assert abs(float(a[sel].sum())) < 1e-6  # centred
        if float(r[sel].std(correction=0)) > 1e-3:  # no floor hit, eps negligible
            assert float(a[sel].std(correction=0)) == pytest.approx(1.0, rel=1e-3)


@settings(max_examples=100, deadline=None)
@given(data=grouped_rewards(), shift=st.floats(-50, 50), scale=st.floats(0.1, 10))
def test_invariant_to_shift_and_positive_scale_of_a_group(data, shift, scale):
    r, g = data
    assume(
        all(float(r[g == x].std(correction=0)) > 1e-2 or (g == x).sum() == 1 for x in g.unique())
    )
    # exact only without eps: with eps = 1e-6 a std of 1e-3 after scaling moves A by 1e-3
    base = group_advantages(r, g, eps=0.0).advantages
    moved = group_advantages(r * scale + shift, g, eps=0.0).advantages
    assert torch.allclose(base, moved, atol=1e-4)


@settings(max_examples=100, deadline=None)
@given(data=grouped_rewards(), seed=st.integers(0, 1000))
def test_row_order_does_not_matter(data, seed):
    # permute, compute, un-permute
    r, g = data
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(r)))
    a = group_advantages(r, g).advantages
    b = group_advantages(r[perm], g[perm]).advantages
    unperm = torch.empty_like(b)
    unperm[perm] = b
    assert torch.allclose(a, unperm, atol=1e-12)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("ddof", [0, 1])
@settings(max_examples=60, deadline=None)
@given(data=grouped_rewards(), wseed=st.integers(0, 100))
def test_vectorized_equals_loop_reference(data, scale, ddof, wseed):
    r, g = data
    w = torch.from_numpy((np.random.default_rng(wseed).random(len(r)) > 0.3).astype(float))
    got = group_advantages(r, g, weights=w, ddof=ddof, scale=scale).advantages
    assert torch.allclose(got, loop_reference(r, g, w, ddof=ddof, scale=scale), atol=1e-9)


def test_hand_computed_group():
    # rewards 0, 0.1, 1.0, 1.0 (one query, K=4): mean 0.525,
    # deviations -0.525, -0.425, 0.475, 0.475; population var = (0.275625 + 0.180625
    # + 2 * 0.225625) / 4 = 0.226875, std = 0.476314
    a = group_advantages([0.0, 0.1, 1.0, 1.0], [0, 0, 0, 0], eps=0.0).advantages
    std = 0.226875**0.5
    assert a.tolist() == pytest.approx([-0.525 / std, -0.425 / std, 0.475 / std, 0.475 / std])
    # ddof=1: sample var = 0.9075 / 3 = 0.3025, std = 0.55
    a1 = group_advantages([0.0, 0.1, 1.0, 1.0], [0, 0, 0, 0], ddof=1, eps=0).advantages
    assert a1.tolist() == pytest.approx([-0.525 / 0.55, -0.425 / 0.55, 0.475 / 0.55, 0.475 / 0.55])


def test_constant_and_single_row_groups_get_exactly_zero():
    r = group_advantages([0.7, 0.7, 0.7, 0.2, 5.0, 1.0], [1, 1, 1, 2, 3, 3])
    assert r.advantages[:4].tolist() == [0.0, 0.0, 0.0, 0.0]  # constant group, single row
    assert r.stats.zero_std.tolist() == [True, True, False]
    assert r.stats.frac_zero_std == pytest.approx(2 / 3)
    # float residue: 0.1 + 0.2 vs 0.3 differ by 5.6e-17 -> floored to 0, not +-0.7
    res = group_advantages(torch.tensor([0.1 + 0.2, 0.3], dtype=torch.float64), [0, 0])
    assert res.advantages.tolist() == [0.0, 0.0]


def test_zero_weight_rows_are_left_out_and_get_zero():
    # weights 1, 1, 0: stats over {0, 1} only -> advantages -1, +1, 0 (the pad row's 9 is ignored)
    r = group_advantages([0.0, 1.0, 9.0], [0, 0, 0], weights=[1.0, 1.0, 0.0])
    assert r.advantages.tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-5)
    assert r.stats.count.tolist() == [2]


def test_batch_scale_uses_the_std_of_all_rows():
    # groups {0, 1} and {10, 11}: group means 0.5, 10.5; batch population std of
    # [0, 1, 10, 11] = sqrt(mean([27.5625... ])) -> deviations +-0.5 divided by it
    r = torch.tensor([0.0, 1.0, 10.0, 11.0], dtype=torch.float64)
    a = group_advantages(r, [0, 0, 1, 1], scale="batch", eps=0.0).advantages
    assert a.tolist() == pytest.approx([-0.5, 0.5, -0.5, 0.5] / np.std(r.numpy()))
    n = group_advantages(r, [0, 0, 1, 1], scale="none").advantages
    assert n.tolist() == pytest.approx([-0.5, 0.5, -0.5, 0.5])


def test_never_nan_on_float32_and_empty_input():
    r = group_advantages(torch.tensor([1e30, -1e30, 0.0]), [0, 0, 1])
    assert torch.isfinite(r.advantages).all()
    assert (
        group_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.int64)).advantages.numel() == 0
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": [0.0, float("nan")]}, "rewards must be finite; NaN/inf at rows 1"),
        ({"group_ids": [0, -2]}, "group_ids must be non-negative; row 1 is -2"),
        ({"group_ids": [0, 1, 2]}, "mismatched lengths: rewards has 2, group_ids has 3"),
        ({"ddof": 2}, "ddof must be 0 .* or 1"),
        ({"scale": "rank"}, "unknown advantage scale 'rank'; valid: 'group', 'batch', 'none'"),
        ({"weights": [1.0, -1.0]}, "weights must be >= 0; row 1 is -1.0"),
        ({"eps": -1.0}, "eps must be >= 0"),
    ],
)
def test_bad_advantage_input_is_a_clear_error(kwargs, match):
    args = {"rewards": [0.0, 1.0], "group_ids": [0, 0]} | kwargs
    with pytest.raises(ValueError, match=match):
        group_advantages(**args)


# --- group ids -------------------------------------------------------------------------------


def test_main_groups_are_queries():
    assert main_group_ids([5, 5, 9, 9]).tolist() == [5, 5, 9, 9]


def test_per_query_groups_split_roles():
    g = sub_group_ids("per_query", [0, 0, 1, 1], role_ids=[0, 1, 0, 1])
    assert len(set(g.tolist())) == 4  # (query, role) pairs are distinct groups


def test_per_invocation_groups_the_ith_call_of_a_query():
    # query 0: rollout A calls twice, rollout B once -> groups {A0, B0} and {A1}
    g = sub_group_ids("per_invocation", [0, 0, 0, 1], invocation=[0, 1, 0, 0]).tolist()
    assert g[0] == g[2] and g[1] != g[0] and g[3] not in (g[0], g[1])


def test_queue_window_takes_consecutive_arrivals_per_role():
    # role 0 arrives in order rows 5, 4, 2, 0 -> windows of 2: {5, 4}, {2, 0}; role 1: {3, 1}
    g = sub_group_ids(
        "queue_window", [0] * 6, role_ids=[0, 1, 0, 1, 0, 0], arrival=[5, 4, 3, 2, 1, 0], window=2
    ).tolist()
    assert g[5] == g[4] and g[2] == g[0] and g[3] == g[1]
    assert len({g[5], g[2], g[3]}) == 3


def test_group_id_builder_errors():
    with pytest.raises(ValueError, match="unknown sub grouping 'by_tool'"):
        sub_group_ids("by_tool", [0])
    with pytest.raises(ValueError, match="needs invocation"):
        sub_group_ids("per_invocation", [0])
    with pytest.raises(ValueError, match="needs window >= 1"):
        sub_group_ids("queue_window", [0], arrival=[0])


# --- aligned rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["duplicate_drop", "balanced", "mask", "none"])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_aligned_advantages_equal_the_generic_path(mode, scale, contiguous, seed):
    # the fused kernel == group_advantages(rewards[index], groups[rollout], weights=weight),
    # both when a group's blocks are contiguous (in-cache path) and when they interleave
    rng = np.random.default_rng(seed)
    n_rollouts, k = 24, 4
    ids = np.repeat(np.arange(n_rollouts), rng.poisson(2.5, n_rollouts))
    rewards = torch.from_numpy(rng.integers(0, 5, len(ids)) / 4)
    a = align(ids, n_rollouts, 3, mode, seed=seed)
    groups = torch.arange(n_rollouts) // k if contiguous else torch.arange(n_rollouts) % k
    fused = aligned_group_advantages(rewards, a, groups, scale=scale, ddof=seed % 2)
    ref = group_advantages(
        rewards[a.index], groups[a.rollout], weights=a.weight, scale=scale, ddof=seed % 2
    )
    assert torch.allclose(fused.advantages, ref.advantages, atol=1e-12)
    assert torch.equal(fused.stats.ids, ref.stats.ids)
    assert torch.allclose(fused.stats.std, ref.stats.std, atol=1e-12)
    assert torch.equal(fused.stats.zero_std, ref.stats.zero_std)


def test_aligned_advantages_check_their_inputs():
    a = align([0, 0, 1], 2, 2, seed=0)
    with pytest.raises(ValueError, match="rollout_groups has 3 entries but the alignment has 2"):
        aligned_group_advantages([0.0, 1.0, 1.0], a, [0, 0, 0])
    with pytest.raises(ValueError, match="one entry per original sub row"):
        aligned_group_advantages([0.0, 1.0], a, [0, 0])
    with pytest.raises(ValueError, match="rewards must be finite"):
        aligned_group_advantages([0.0, float("inf"), 1.0], a, [0, 0])


# --- alignment and advantages in one pass ----------------------------------------------------


def _same(x, y):
    """Bit-equal tensors of the same dtype."""
    return x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize("mode", ["duplicate_drop", "balanced", "mask", "none"])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("groups_of", ["query", "interleaved", "sparse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(2))
def test_fused_equals_align_then_aligned_advantages(mode, scale, groups_of, dtype, seed):
    # one pass gives the two calls' rows, advantages, statistics and generator position, bit for
    # bit; interleaved groups and the batch scale fall back to the two calls
    rng = np.random.default_rng(seed)
    n_rollouts, k = 40, 4
    d = rng.poisson(2.5, n_rollouts)
    d[rng.random(n_rollouts) < 0.1] += 9  # some rollouts over the target
    ids = np.repeat(np.arange(n_rollouts), d)
    if seed == 1:
        ids = rng.permutation(ids)  # unsorted rows
    rewards = torch.from_numpy(rng.integers(0, 5, len(ids)) / 4).to(dtype)
    groups = {
        "query": torch.arange(n_rollouts) // k,
        "interleaved": torch.arange(n_rollouts) % k,
        "sparse": torch.arange(n_rollouts) // k * 10**9,
    }[groups_of]
    kw = {"ddof": seed % 2, "scale": scale}
    g1, g2 = np.random.default_rng(seed), np.random.default_rng(seed)
    a = align(ids, n_rollouts, 3 + seed, mode, seed=g1)
    ref = aligned_group_advantages(rewards, a, groups, **kw)
    b, got = align_advantages(rewards, ids, n_rollouts, 3 + seed, groups, mode, g2, **kw)
    assert _same(a.index, b.index) and _same(a.weight, b.weight) and a.counts() == b.counts()
    assert _same(ref.advantages, got.advantages)
    for field in ("ids", "count", "mean", "std", "zero_std"):
        assert _same(getattr(ref.stats, field), getattr(got.stats, field)), field
    assert g1.bit_generator.random_raw() == g2.bit_generator.random_raw()


def test_fused_paper_scale_case_equals_two_calls():
    # the benchmark's shape, scaled down: Poisson(3) calls plus a heavy tail, K = 8, D = 8
    rng = np.random.default_rng(0)
    d = rng.poisson(3.0, 4096)
    d[rng.random(4096) < 0.05] += rng.geometric(0.15, int((rng.random(4096) < 0.05).sum()))[0]
    ids = np.repeat(np.arange(4096), d)
    rewards = torch.from_numpy((rng.integers(0, 5, len(ids)) / 4).astype(np.float32))
    groups = torch.arange(4096) // 8
    a = align(ids, 4096, 8, seed=0)
    ref = aligned_group_advantages(rewards, a, groups)
    b, got = align_advantages(rewards, ids, 4096, 8, groups, seed=0)
    assert torch.equal(a.index, b.index) and torch.equal(ref.advantages, got.advantages)
    assert torch.equal(ref.stats.mean, got.stats.mean) and torch.equal(ref.stats.std, got.stats.std)


def test_fused_checks_its_inputs():
    with pytest.raises(ValueError, match="rewards must be finite; NaN/inf at rows 1"):
        align_advantages([0.0, float("nan"), 1.0], [0, 0, 1], 2, 2, [0, 0], seed=0)
    with pytest.raises(ValueError, match="rollout_ids must lie in"):
        align_advantages([0.0, 1.0], [0, 5], 2, 2, [0, 0], seed=0)
    with pytest.raises(ValueError, match="rollout_groups has 3 entries but the alignment has 2"):
        align_advantages([0.0, 1.0], [0, 1], 2, 2, [0, 0, 0], seed=0)
    with pytest.raises(ValueError, match="rollout_groups must be non-negative"):
        align_advantages([0.0, 1.0], [0, 1], 2, 2, torch.tensor([0, -1]), seed=0)
    with pytest.raises(ValueError, match="ddof must be 0"):
        align_advantages([0.0, 1.0], [0, 1], 2, 2, [0, 0], seed=0, ddof=2)
