"""sim.testing.check_group_advantages and detect_convention: ours passes, wrong ones are caught
by a named case, TRL's and verl's formulas are recognised."""

from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from sim.advantages import group_advantages
from sim.testing import (
    CONVENTIONS,
    CheckFailed,
    check_group_advantages,
    detect_convention,
    reference_advantages,
)
from sim.testing.advantages import _worked_cases
from sim.testing.strategies import grouped_rewards
from tests.sim.testing import impls


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_hand_computed_worked_cases_agree_with_the_reference(name):
    # the docstring's arithmetic and reference_advantages must give the same numbers
    for case in _worked_cases():
        hand = case.hand(CONVENTIONS[name])
        ref = reference_advantages(case.rewards, case.group_ids, name)
        assert np.allclose(hand, ref, rtol=1e-12, atol=1e-12), (name, case.name)


def test_ours_passes_every_case():
    report = check_group_advantages(group_advantages)
    assert report.passed, report.diff()
    assert not any(c.skipped for c in report.cases)  # group_advantages takes weights
    assert report.max_error < 1e-9


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (partial(group_advantages, ddof=1), {"ddof": 1}),
        (partial(group_advantages, scale="batch"), {"scale": "batch"}),
        (partial(group_advantages, scale="none"), {"convention": "mean_only", "std_floor": 1e-6}),
        (impls.numpy_paper_advantages, {"inputs": "numpy"}),
    ],
)
def test_right_implementations_of_declared_conventions_pass(fn, kwargs):
    report = check_group_advantages(fn, **kwargs)
    assert report.passed, report.diff()


@pytest.mark.parametrize(
    ("fn", "case"),
    [
        (impls.sample_std_advantages, "worked_one_group"),  # sample std, population declared
        (impls.eps_inside_sqrt_advantages, "near_constant_group"),  # eps inside the root
        (impls.nan_on_constant_advantages, "constant_group"),  # 0 / 0 on a constant group
    ],
)
def test_wrong_implementations_are_caught_by_a_named_case(fn, case):
    report = check_group_advantages(fn)
    assert not report.passed
    assert not report.case(case).passed, report.table()
    with pytest.raises(CheckFailed, match=case):
        report.raise_if_failed()


def test_eps_inside_the_root_passes_the_worked_cases_but_not_the_near_constant_one():
    # sqrt(0.226875 + 1e-6) vs 0.4763139 + 1e-6 differ by 1e-7 relative: only a std near
    # sqrt(eps) shows the mistake: 5e-6 / sqrt(2.5e-11 + 1e-6) = 0.005 instead of 0.8333
    report = check_group_advantages(impls.eps_inside_sqrt_advantages)
    assert report.case("worked_one_group").passed
    bad = report.case("near_constant_group")
    assert bad.expected[1] == pytest.approx(5e-6 / (5e-6 + 1e-6))
    assert bad.got[1] == pytest.approx(5e-6 / np.sqrt(2.5e-11 + 1e-6))


def test_constant_group_nan_is_reported_with_the_rows():
    case = check_group_advantages(impls.nan_on_constant_advantages).case("constant_group")
    assert np.isnan(case.got[:4]).all() and case.max_error == float("inf")


def test_trl_reimplementation_passes_under_trl_conventions():
    for conv, scale in (("trl", "group"), ("trl_batch", "batch"), ("mean_only", "none")):
        fn = partial(impls.trl_advantages, scale_rewards=scale)
        report = check_group_advantages(fn, convention=conv)
        assert report.passed, report.diff()
        assert "TRL" in report.case("nan_rewards").message  # NaN rows left out and given 0


def test_verl_reimplementation_passes_under_verl_conventions_except_nan():
    # verl has no NaN guard: a NaN reward spreads to its whole group, silently
    for conv, norm in (("verl", True), ("verl_no_std", False)):
        fn = partial(impls.verl_outcome_advantage, norm_adv_by_std_in_grpo=norm)
        report = check_group_advantages(fn, convention=conv, adapter=impls.verl_adapter)
        assert [c.name for c in report.failures] == ["nan_rewards"], report.diff()
        assert "silently" in report.case("nan_rewards").message


@pytest.mark.parametrize(
    ("fn", "adapter", "want"),
    [
        (group_advantages, None, "paper"),
        (partial(group_advantages, scale="none"), None, "mean_only"),
        (impls.trl_advantages, None, "trl"),
        (partial(impls.trl_advantages, scale_rewards="batch"), None, "trl_batch"),
        (partial(impls.trl_advantages, scale_rewards="none"), None, "mean_only"),
        (impls.verl_outcome_advantage, impls.verl_adapter, "verl"),
        (
            partial(impls.verl_outcome_advantage, norm_adv_by_std_in_grpo=False),
            impls.verl_adapter,
            "verl_no_std",
        ),
    ],
)
def test_detect_convention_recognises_known_formulas(fn, adapter, want):
    match = detect_convention(fn, adapter=adapter)
    assert match.name == want, str(match)
    assert str(match).startswith(f"matches {want}:")


@pytest.mark.parametrize(
    ("fn", "closest", "case"),
    [
        (impls.sample_std_advantages, "verl", "group_of_one"),  # verl but for groups of one
        (impls.eps_inside_sqrt_advantages, "paper", "near_constant_group"),
        (impls.nan_on_constant_advantages, "paper", "group_of_one"),  # 0 / 0 already there
    ],
)
def test_detect_convention_says_where_a_wrong_one_departs_first(fn, closest, case):
    match = detect_convention(fn)
    assert match.name is None and match.closest == closest, str(match)
    assert f"case {case!r}" in match.departure
    assert str(match).startswith("matches none of paper, trl")


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (impls.raising_advantages, "raised RuntimeError: boom"),
        (impls.column_advantages, "returned shape (4, 1), expected (4,)"),
        (impls.integer_advantages, "returned dtype torch.int64, expected a floating dtype"),
        (impls.mutating_advantages, "mutated its argument 'rewards' in place"),
        (lambda r, g: None, "dtype object"),
    ],
)
def test_bad_functions_are_failed_cases_never_crashes(fn, words):
    report = check_group_advantages(fn, n_random=3)
    assert not report.passed
    assert words in report.case("worked_one_group").message
    assert "FAIL" in report.table() and words[:20] in report.diff()
    assert detect_convention(fn).name is None  # detection survives it too


def test_raise_on_fail_raises_a_readable_diff():
    with pytest.raises(CheckFailed) as info:
        check_group_advantages(impls.sample_std_advantages, raise_on_fail=True)
    text = str(info.value)
    assert "- worked_one_group: row 0: expected -1.10221, got -0.954544" in text
    assert "row  expected        got" in text


def test_skip_and_unknown_convention():
    report = check_group_advantages(impls.sample_std_advantages, skip=("worked_one_group",))
    assert report.case("worked_one_group").skipped
    with pytest.raises(ValueError, match="unknown convention 'grpo'; valid: 'paper', 'trl'"):
        check_group_advantages(group_advantages, convention="grpo")


@settings(max_examples=30, deadline=None)
@given(case=grouped_rewards())
def test_trl_and_verl_conventions_equal_the_reimplemented_formulas(case):
    # the named conventions (built on our core) agree with the libraries' formulas
    r, g = case
    trl = impls.trl_advantages(torch.from_numpy(r), torch.from_numpy(g)).numpy()
    assert np.allclose(trl, reference_advantages(r, g, "trl"), atol=1e-9)
    verl = impls.verl_adapter(
        impls.verl_outcome_advantage, torch.from_numpy(r), torch.from_numpy(g), None
    )
    assert np.allclose(verl.numpy(), reference_advantages(r, g, "verl"), atol=1e-9)
