"""Rules of sim/rewards.py (DESIGN §3.1), with the arithmetic in comments."""

import itertools
import math

import pytest
import torch

from sim.rewards import betas_from_local_share, main_reward, sub_reward


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
