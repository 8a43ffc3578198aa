"""sim.testing.check_alignment: our modes pass, each wrong alignment fails its property."""

import numpy as np
import pytest

from sim.alignment import align
from sim.testing import check_alignment
from tests.sim.testing import impls

N = 25  # hypothesis examples per check (plus 5 fixed patterns)


@pytest.mark.parametrize("mode", ["duplicate_drop", "balanced", "mask"])
def test_our_aligned_modes_pass_every_property(mode):
    report = check_alignment(
        lambda ids, n, d, seed: align(ids, n, d, mode, seed=seed), max_examples=N
    )
    assert report.passed, report.diff()
    ratio = report.case("weight_variance_vs_balanced")
    if mode == "duplicate_drop":  # random copies weigh rows less evenly than balanced ones
        assert ratio.got > ratio.expected
    else:  # balanced and mask's cyclic pads reach the floor/ceil bound exactly
        assert ratio.got == pytest.approx(ratio.expected)


def test_a_numpy_loop_with_numpy_inputs_passes():
    assert check_alignment(impls.numpy_align, inputs="numpy", max_examples=N).passed


@pytest.mark.parametrize(
    ("fn", "prop", "words"),
    [
        (impls.other_rollout_duplicates_align, "rows_from_own_rollout", "of rollout"),
        (impls.drop_with_replacement_align, "drops_without_replacement", "keeps rows"),
        (impls.unseeded_align, "reproducible_from_seed", "same seed, other rows"),
        (impls.empty_rollouts_padded_align, "empty_rollouts_contribute_nothing", "d_k=0"),
        (lambda ids, n, d, seed: align(ids, n, d, "none"), "exactly_target_rows", "expected D"),
    ],
)
def test_wrong_alignments_fail_the_named_property(fn, prop, words):
    report = check_alignment(fn, inputs="numpy", max_examples=N)
    case = report.case(prop)
    assert not case.passed, report.table()
    assert words in case.message and "rollout_ids=" in case.message  # the counterexample call


def test_a_raising_function_is_a_failed_case():
    def broken(ids, n, d, seed):
        raise IndexError("nope")

    report = check_alignment(broken, max_examples=5)
    assert "raised IndexError: nope" in report.case("returns_valid_index").message
    assert not report.passed


def test_out_of_range_rows_are_reported():
    report = check_alignment(lambda ids, n, d, seed: np.full(3, 10**6), max_examples=5)
    assert "is not a row in" in report.case("returns_valid_index").message


def test_same_seed_draws_the_same_patterns():
    a = check_alignment(impls.drop_with_replacement_align, max_examples=10, seed=3)
    b = check_alignment(impls.drop_with_replacement_align, max_examples=10, seed=3)
    assert a.table() == b.table()
