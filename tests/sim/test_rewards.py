"""Rules of sim/rewards.py (DESIGN §3.1), with the arithmetic in comments."""

import itertools
import math

import numpy as np
import pytest
import torch

from sim.rewards import betas_from_local_share, judge_expert, main_reward, sub_reward


def test_main_reward_paper_defaults_take_three_values():
    # R_M = f * (0.1 + 0.9 c): bad format -> 0; good format wrong -> 0.1; good format right -> 1.0
    r = main_reward([0, 0, 1, 1], [0, 1, 0, 1])
    assert r.tolist() == pytest.approx([0.0, 0.0, 0.1, 1.0])


@pytest.mark.parametrize(
    ("f", "c", "e", "expected"),
    [
        # R_S = f * (0.1 + 0.4 c + 0.5 e)
        (1, 1, 1.0, 0.1 + 0.4 + 0.5),  # 1.0
        (1, 1, 0.5, 0.1 + 0.4 + 0.25),  # 0.75
        (1, 1, 0.0, 0.1 + 0.4),  # 0.5
        (1, 0, 1.0, 0.1 + 0.5),  # 0.6
        (1, 0, 0.5, 0.1 + 0.25),  # 0.35
        (1, 0, 0.0, 0.1),  # 0.1
    ]
    + [(0, c, e, 0.0) for c, e in itertools.product([0, 1], [0.0, 0.5, 1.0])],  # f_S = 0 -> 0
)
def test_sub_reward_linear_paper_defaults(f, c, e, expected):
    assert sub_reward([f], [c], [e]).item() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("f", "c", "e", "expected"),
    [
        (0, 1, 1.0, 0.0),  # bad format -> 0 whatever the team did
        (1, 1, 0.0, 1.0),  # main answer correct -> 1.0, expert score ignored
        (1, 0, 1.0, 0.1),  # main answer wrong -> 0.1
        (1, 0.5, 1.0, 0.1),  # partial credit is not "correct"
    ],
)
def test_sub_reward_gated_is_the_released_code_table(f, c, e, expected):
    assert sub_reward([f], [c], [e], form="gated").item() == pytest.approx(expected)


def test_global_only_and_local_only_keep_b1_and_use_one_part():
    # global_only: 0.1 + 0.9 c ; local_only: 0.1 + 0.9 e
    g = sub_reward([1, 1], [1, 0], [0.0, 1.0], form="global_only")
    loc = sub_reward([1, 1], [1, 0], [0.0, 1.0], form="local_only")
    assert g.tolist() == pytest.approx([1.0, 0.1])
    assert loc.tolist() == pytest.approx([0.1, 1.0])


def test_local_share_default_gives_paper_betas():
    # w = 5/9: b2 = 0.9 * 4/9 = 0.4, b3 = 0.9 * 5/9 = 0.5
    assert betas_from_local_share(5 / 9) == pytest.approx((0.1, 0.4, 0.5))
    assert betas_from_local_share(0.0, b1=0.2) == pytest.approx((0.2, 0.8, 0.0))
    assert sum(betas_from_local_share(0.3, 0.25)) == pytest.approx(1.0)


def test_rewards_work_on_tensors_and_keep_dtype():
    r = main_reward(torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.0]))
    assert r.dtype == torch.float64


def test_nan_reward_input_names_the_rows():
    with pytest.raises(ValueError, match=r"correct must be finite; NaN/inf at rows 1, 3"):
        main_reward([1, 1, 1, 1], [0, math.nan, 1, math.inf])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"form": "cubic"}, "unknown reward form 'cubic'; valid: 'linear', 'gated'"),
        ({"beta": (0.1, 0.4)}, "beta must have 3 entries"),
        ({"beta": (0.1, -0.4, 0.5)}, r"beta\[1\] must be a finite number >= 0"),
    ],
)
def test_bad_sub_reward_arguments_say_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sub_reward([1], [1], [1], **kwargs)


def test_bad_flags_scores_and_lengths_are_errors():
    with pytest.raises(ValueError, match="format_ok must be 0 or 1; row 1 is 0.5"):
        main_reward([1, 0.5], [1, 1])
    with pytest.raises(ValueError, match=r"expert must lie in \[0.0, 1.0\]; row 0 is 1.5"):
        sub_reward([1], [1], [1.5])
    with pytest.raises(ValueError, match="mismatched lengths: format_ok has 2, correct has 3"):
        main_reward([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="local_share must lie in"):
        betas_from_local_share(1.5)


# ---------------------------------------------------------------------- imperfect judge (issue 10)
def test_exact_judge_is_the_identity_bit_for_bit():
    e = torch.tensor([0.0, 0.25, 1 / 3, 1.0])
    assert torch.equal(judge_expert(e), e)
    assert torch.equal(judge_expert(e, "exact", noise=0.3, rng=None), e)  # noise ignored


@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 0.5])
def test_flip_rate_matches_the_noise(p):
    # e = 0 everywhere: a flipped verdict reads 1, so the mean is the flip rate;
    # binomial std sqrt(0.25 / 100_000) = 0.0016 at most, 0.01 is > 6 std
    judged = judge_expert(torch.zeros(100_000), "flip", p, rng=np.random.default_rng(0))
    assert set(judged.unique().tolist()) <= {0.0, 1.0}
    assert float(judged.mean()) == pytest.approx(p, abs=0.01)


def test_flip_maps_a_partial_score_to_its_complement():
    # e = 0.3 -> 0.7 when flipped, else 0.3
    judged = judge_expert(torch.full((1000,), 0.3), "flip", 0.5, rng=np.random.default_rng(1))
    assert set(round(v, 6) for v in judged.tolist()) == {0.3, 0.7}


def test_gaussian_judge_adds_bias_then_clips():
    rng = np.random.default_rng(2)
    # mean 0.5 + bias 0.2 = 0.7, std 0.05: essentially nothing clipped
    judged = judge_expert(
        torch.full((50_000,), 0.5, dtype=torch.float64), "gaussian", 0.05, 0.2, rng
    )
    assert float(judged.mean()) == pytest.approx(0.7, abs=0.002)
    assert float(judged.std()) == pytest.approx(0.05, rel=0.02)
    # std 3 around 0.5: most draws leave [0, 1] and are clipped to exactly 0 or 1
    wide = judge_expert(torch.full((10_000,), 0.5), "gaussian", 3.0, rng=rng)
    assert float(wide.min()) == 0.0 and float(wide.max()) == 1.0
    assert float(((wide == 0) | (wide == 1)).float().mean()) > 0.8


def test_bias_applies_to_the_exact_judge_and_is_clipped():
    # 0.9 + 0.2 = 1.1 -> 1.0 ; 0.5 + 0.2 = 0.7 ; 0.1 - 0.2 -> 0.0
    assert judge_expert([0.9, 0.5], bias=0.2).tolist() == pytest.approx([1.0, 0.7])
    assert judge_expert([0.1], bias=-0.2).tolist() == [0.0]


def test_judge_draws_only_from_its_generator():
    e = torch.rand(64, generator=torch.Generator().manual_seed(0))
    for kind, noise in (("flip", 0.3), ("gaussian", 0.2)):
        a = judge_expert(e, kind, noise, rng=np.random.default_rng([7, 3]))
        b = judge_expert(e, kind, noise, rng=np.random.default_rng([7, 3]))
        c = judge_expert(e, kind, noise, rng=np.random.default_rng([7, 4]))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.dtype == e.dtype


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("cubic", 0.0), "unknown judge 'cubic'; valid: 'exact', 'flip', 'gaussian'"),
        (("flip", 0.6), r"judge noise of 'flip' must be \[0, 0.5\], got 0.6"),
        (("gaussian", -0.1), r"judge noise of 'gaussian' must be >= 0"),
        (("flip", 0.1), "a noisy judge needs a numpy Generator"),
    ],
)
def test_bad_judge_arguments_say_what_is_allowed(args, match):
    with pytest.raises(ValueError, match=match):
        judge_expert([0.5], *args)


def test_judge_refuses_scores_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"expert must lie in \[0.0, 1.0\]; row 1 is 2.0"):
        judge_expert([0.5, 2.0])


# ---------------------------------------------------------------------- costs, flat shaping
def test_time_and_call_costs_by_hand():
    # R_M' = f (0.1 + 0.9 c) - 0.01 * time - 0.05 * calls
    # row 0: 1.0 - 0.01*10 - 0.05*2 = 0.8 ; row 1: 0.1 - 0.2 - 0 = -0.1 ; row 2: 0 - 0.05 - 0.15
    r = main_reward(
        [1, 1, 0],
        [1, 0, 1],
        sim_time=[10.0, 20.0, 5.0],
        time_cost=0.01,
        calls=[2, 0, 3],
        call_cost=0.05,
    )
    assert r.tolist() == pytest.approx([0.8, -0.1, -0.2])


def test_flat_shaping_adds_the_weighted_expert_term_by_hand():
    # R_M'' = f (0.1 + 0.9 c) + 0.5 e: 1.0 + 0.25 ; 0.1 + 0.5 ; 0 + 0.5 (outside f_M)
    r = main_reward([1, 1, 0], [1, 0, 0], expert=[0.5, 1.0, 1.0], expert_weight=0.5)
    assert r.tolist() == pytest.approx([1.25, 0.6, 0.5])


def test_zero_costs_leave_the_main_reward_bit_for_bit():
    f = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    c = torch.tensor([1.0, 0.3, 1.0, 0.0], dtype=torch.float64)
    base = f * (0.1 + 0.9 * c)
    r = main_reward(f, c, sim_time=[1e9, 2.0, 3.0, 4.0], calls=[1, 2, 3, 4], expert=[1, 1, 1, 1])
    assert torch.equal(r, base) and torch.equal(main_reward(f, c), base)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time_cost": -0.1, "sim_time": [1.0]}, "time_cost must be a finite number >= 0"),
        ({"call_cost": math.inf, "calls": [1]}, "call_cost must be a finite number >= 0"),
        ({"call_cost": 0.1}, r"call_cost = 0.1 needs calls"),
        ({"time_cost": 0.1, "sim_time": [-1.0]}, r"sim_time must lie in \[0.0, inf\]"),
        ({"call_cost": 0.1, "calls": [1, 2]}, "mismatched lengths: format_ok has 1, calls has 2"),
        ({"expert_weight": 0.5, "expert": [1.5]}, r"expert must lie in \[0.0, 1.0\]"),
    ],
)
def test_bad_cost_and_shaping_arguments_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        main_reward([1], [1], **kwargs)
