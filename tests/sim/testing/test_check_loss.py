"""sim.testing.check_policy_loss: ours passes, wrong losses fail the named case."""

from functools import partial

import pytest
import torch

from sim.loss import policy_loss
from sim.testing import check_policy_loss
from tests.sim.testing import impls


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ratio_level": "sequence", "agg": "token-mean"}, {"eps_low": 0.1, "eps_high": 0.5}],
)
def test_ours_passes_every_case(kwargs):
    report = check_policy_loss(policy_loss, n_random=4, **kwargs)
    assert report.passed, report.diff()
    # policy_loss takes agg and ratio_level: every mode and level was checked
    assert len([c for c in report.cases if c.name.startswith("aggregation[")]) == 4
    assert len([c for c in report.cases if c.name.startswith("random_vs_reference[")]) == 3


def test_hand_values_of_the_clip_cases():
    # rho = 1.28 e^0.2 = 1.5634 (above 1 + eps_high), 0.8 e^-0.2 = 0.6550 (below 1 - eps_low)
    report = check_policy_loss(policy_loss, n_random=1)
    assert report.case("clip_high").expected == pytest.approx(-0.64)
    assert report.case("clip_low").expected == pytest.approx(0.4)
    assert report.case("unclipped_high").expected == pytest.approx(1.28 * 2.718281828**0.2 / 2)
    assert report.case("unclipped_low").expected == pytest.approx(-0.8 * 2.718281828**-0.2 / 2)


@pytest.mark.parametrize(
    ("fn", "kwargs", "case"),
    [
        (impls.one_sided_clip_loss, {}, "clip_low"),
        (impls.padded_token_mean_loss, {"agg": "token-mean"}, "aggregation[token-mean]"),
        (impls.detached_ratio_loss, {}, "gradient_finite_differences"),
    ],
)
def test_wrong_losses_fail_the_named_case(fn, kwargs, case):
    report = check_policy_loss(fn, n_random=2, **kwargs)
    assert not report.case(case).passed, report.table()
    assert not report.passed


def test_detached_ratio_is_reported_as_having_no_gradient():
    report = check_policy_loss(impls.detached_ratio_loss, n_random=1)
    assert "no gradient" in report.case("clip_high").message


def test_bad_outputs_are_failed_cases():
    def rows(logp, logp_old, advantages, mask):
        return policy_loss(logp, logp_old, advantages, mask)[0].expand(2)

    report = check_policy_loss(rows, n_random=1)
    assert "expected a scalar" in report.case("padding_ignored").message
    report = check_policy_loss(lambda *a: 1.0, n_random=1)
    assert "returned float" in report.case("clip_low").message


def test_adapter_for_another_signature():
    def mine(batch, clip=(0.2, 0.28)):
        return policy_loss(batch["lp"], batch["old"], batch["adv"], batch["mask"],
                           eps_low=clip[0], eps_high=clip[1])[0]  # fmt: skip

    def adapter(fn, logp, logp_old, advantages, mask, **opts):
        batch = {"lp": logp, "old": logp_old, "adv": advantages, "mask": mask}
        return fn(batch, clip=(opts["eps_low"], opts["eps_high"]))

    assert check_policy_loss(mine, adapter=adapter, n_random=2).passed
    wrong = partial(policy_loss, eps_low=0.3)
    assert not check_policy_loss(lambda *a: wrong(*a)[0], n_random=2).passed


def test_unknown_agg_is_a_clear_error():
    with pytest.raises(ValueError, match="agg must be one of"):
        check_policy_loss(policy_loss, agg="sum")


def test_losses_get_float64_inputs_and_logp_with_grad_for_the_gradient_cases():
    seen = []

    def spy(logp, logp_old, advantages, mask):
        seen.append((logp.dtype, logp.requires_grad))
        return policy_loss(logp, logp_old, advantages, mask)[0]

    check_policy_loss(spy, n_random=1)
    assert {dtype for dtype, _ in seen} == {torch.float64}
    assert any(grad for _, grad in seen)
