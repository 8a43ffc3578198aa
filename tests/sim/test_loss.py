"""Rules of sim/loss.py (DESIGN §3.4), on hand-made batches."""

import math

import pytest
import torch

from sim.loss import LOSS_AGG_MODES, RATIO_LEVELS, policy_loss

# Two rows, padded length 3. Row 0 has 3 valid tokens, row 1 has 1.
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)


def _logp(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_aggregations_match_their_definitions_at_ratio_one():
    # rho = 1 everywhere -> per-token loss = -A: row 0 tokens -1, -1, -1; row 1 token +2
    lp = _logp([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    want = {
        "seq-mean-token-mean": (-1.0 + 2.0) / 2,  # row means -1 and 2, mean over 2 rows
        "token-mean": (-3.0 + 2.0) / 4,  # 4 valid tokens
        "seq-mean-token-sum": (-3.0 + 2.0) / 2,  # row sums -3 and 2
        "seq-mean-token-sum-norm": (-3.0 + 2.0) / (2 * 3),  # rows x padded length
    }
    for agg, value in want.items():
        loss, _ = policy_loss(lp, lp.detach(), ADV, MASK, agg=agg)
        assert loss.item() == pytest.approx(value), agg


def test_row_weights_multiply_and_zero_weight_rows_are_not_counted():
    # weight 0 on row 1 -> only row 0 counts: seq-mean-token-mean = -1 / 1 row
    lp = _logp([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert policy_loss(lp, lp.detach(), ADV, MASK, weights=w)[0].item() == pytest.approx(-1.0)
    loss, _ = policy_loss(lp, lp.detach(), ADV, MASK, weights=w, agg="token-mean")
    assert loss.item() == pytest.approx(-1.0)  # 3 tokens of row 0 only
    w2 = torch.tensor([0.5, 1.0], dtype=torch.float64)  # (0.5 * -1 + 1 * 2) / 2 rows
    assert policy_loss(lp, lp.detach(), ADV, MASK, weights=w2)[0].item() == pytest.approx(0.75)


def test_clipping_on_both_sides():
    old = torch.zeros(2, 1, dtype=torch.float64)
    mask = torch.ones(2, 1, dtype=torch.float64)
    # A > 0 and rho = e^0.5 = 1.65 > 1.28: loss = -1.28 * A, gradient 0
    lp = _logp([[0.5], [0.0]])
    loss, stats = policy_loss(lp, old, torch.tensor([1.0, 0.0]), mask, agg="token-mean")
    assert loss.item() == pytest.approx(-1.28 / 2)
    loss.backward()
    assert lp.grad[0, 0].item() == 0.0
    assert stats["clip_frac_high"] == pytest.approx(0.5)
    # A < 0 and rho = e^-0.5 = 0.61 < 0.8: loss = -0.8 * A = 0.8, gradient 0
    lp = _logp([[-0.5], [0.0]])
    loss, stats = policy_loss(lp, old, torch.tensor([-1.0, 0.0]), mask, agg="token-mean")
    assert loss.item() == pytest.approx(0.8 / 2)
    loss.backward()
    assert lp.grad[0, 0].item() == 0.0
    assert stats["clip_frac_low"] == pytest.approx(0.5)
    # A > 0 with rho below 1 - eps_low is NOT clipped (min picks the unclipped term)
    lp = _logp([[-0.5], [0.0]])
    loss, _ = policy_loss(lp, old, torch.tensor([1.0, 0.0]), mask, agg="token-mean")
    assert loss.item() == pytest.approx(-math.exp(-0.5) / 2)


def test_sequence_ratio_is_the_trajectory_likelihood_ratio():
    # row 0 log-ratios 0.1, -0.05, 0.02 -> rho = exp(0.07) shared by its tokens;
    # row 1 (one token, log-ratio 0.03) -> exp(0.03). seq-mean-token-mean = mean of -rho*A
    lp = _logp([[0.1, -0.05, 0.02], [0.03, 9.0, 9.0]])  # padding values must not matter
    old = torch.zeros(2, 3, dtype=torch.float64)
    loss, stats = policy_loss(lp, old, ADV, MASK, ratio_level="sequence", eps_high=10, eps_low=0.9)
    traj_ratio = torch.exp((lp.detach() * MASK).sum(1))  # prod_t pi/pi_old over valid tokens
    assert loss.item() == pytest.approx(float((-traj_ratio * ADV).mean()))
    # GSPO: length-averaged log-ratio exp(0.07 / 3)
    loss, _ = policy_loss(lp, old, ADV, MASK, ratio_level="sequence_mean", eps_high=10)
    geo = torch.exp(torch.tensor([0.07 / 3, 0.03], dtype=torch.float64))
    assert loss.item() == pytest.approx(float((-geo * ADV).mean()))


@pytest.mark.parametrize("agg", LOSS_AGG_MODES)
@pytest.mark.parametrize("ratio_level", RATIO_LEVELS)
def test_gradient_matches_finite_differences(agg, ratio_level):
    torch.manual_seed(0)
    lp = (0.1 * torch.randn(3, 4, dtype=torch.float64)).requires_grad_()
    old = 0.1 * torch.randn(3, 4, dtype=torch.float64)
    ref = 0.1 * torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float64)
    adv = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)

    def f(x):
        return policy_loss(
            x,
            old,
            adv,
            mask,
            agg=agg,
            ratio_level=ratio_level,
            ref_logp=ref,
            kl_coef=0.1,
            eps_low=0.5,
            eps_high=0.5,
        )[0]

    assert torch.autograd.gradcheck(f, (lp,), eps=1e-6, atol=1e-6)


def test_kl_and_entropy_terms():
    # k3 with ref - logp = d: exp(d) - d - 1; d = 0.2 -> 0.0214028; loss adds kl_coef * that
    lp = _logp([[0.0]])
    ref = torch.tensor([[0.2]], dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    zero_adv = torch.zeros(1, dtype=torch.float64)
    loss, stats = policy_loss(lp, lp.detach(), zero_adv, one, ref_logp=ref, kl_coef=0.5)
    k3 = math.exp(0.2) - 0.2 - 1
    assert loss.item() == pytest.approx(0.5 * k3)
    assert stats["kl"] == pytest.approx(k3)
    ent = torch.tensor([[1.5]], dtype=torch.float64)
    loss, stats = policy_loss(lp, lp.detach(), zero_adv, one, entropy=ent, entropy_coef=0.1)
    assert loss.item() == pytest.approx(-0.15)
    assert stats["entropy"] == pytest.approx(1.5)


def test_approx_kl_is_zero_on_policy_and_positive_off_policy():
    lp = _logp([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert policy_loss(lp, lp.detach(), ADV, MASK)[1]["approx_kl"] == 0.0
    assert policy_loss(lp, lp.detach() + 0.3, ADV, MASK)[1]["approx_kl"] > 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agg": "sum"}, "unknown loss agg 'sum'; valid: 'seq-mean-token-mean'"),
        ({"ratio_level": "step"}, "unknown ratio_level 'step'; valid: 'token'"),
        ({"eps_low": 1.0}, r"eps_low must lie in \[0, 1\)"),
        ({"kl_coef": 0.1}, "kl_coef > 0 needs ref_logp"),
        ({"entropy_coef": 0.1}, "entropy_coef > 0 needs entropy"),
        ({"advantages": torch.zeros(3)}, "advantages has 3 rows but logp has 2"),
        ({"logp_old": torch.zeros(2, 2)}, r"logp_old has shape \(2, 2\) but logp has \(2, 3\)"),
        ({"weights": torch.tensor([1.0, -1.0])}, "weights must be finite and >= 0"),
        ({"logp_old": torch.full((2, 3), float("nan"))}, "logp_old has NaN/inf at valid tokens"),
    ],
)
def test_bad_loss_input_is_a_clear_error(kwargs, match):
    args = {
        "logp": torch.zeros(2, 3),
        "logp_old": torch.zeros(2, 3),
        "advantages": torch.zeros(2),
        "mask": torch.ones(2, 3),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        policy_loss(**args)
