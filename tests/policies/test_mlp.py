"""Rules of policies/: masking, log-prob consistency, relevance, and learning on a toy."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies import MLPPolicy, shared_policies
from policies.mlp import _masked_log_softmax
from sim import group_advantages, policy_loss

OBS = gym.spaces.Dict(
    {"x": gym.spaces.Box(0.0, 1.0, (3,), np.float32), "action_mask": gym.spaces.MultiBinary(5)}
)
ACT = gym.spaces.MultiDiscrete([2, 3])


def _obs(n, mask=None):
    m = np.ones((n, 5), np.int8) if mask is None else np.tile(np.asarray(mask, np.int8), (n, 1))
    return {"x": np.full((n, 3), 0.5, np.float32), "action_mask": m}


def test_masked_values_are_never_sampled():
    pol = MLPPolicy(OBS, ACT, hidden=8, seed=0)
    acts, logp = pol.act(_obs(500, [0, 1, 1, 0, 1]))  # comp 0 only 1; comp 1 only {0, 2}
    assert set(acts[:, 0]) == {1}
    assert set(acts[:, 1]) <= {0, 2}
    assert np.all(np.isfinite(logp))


def test_act_logp_equals_recomputed_log_prob():
    pol = MLPPolicy(OBS, ACT, hidden=8, seed=1)
    obs = _obs(64)
    acts, logp = pol.act(obs)
    lp, ent = pol.log_prob(
        pol.encode(obs), torch.from_numpy(obs["action_mask"]), torch.from_numpy(acts)
    )
    assert np.allclose(lp.detach().numpy(), logp, atol=1e-5)
    assert torch.all(ent > 0)


def test_irrelevant_components_do_not_count():
    # relevance: when comp 0 == 0 only comp 0 matters -> logp is that of comp 0 alone
    def rel(a):
        out = np.ones(a.shape, np.float32)
        out[a[:, 0] == 0, 1] = 0.0
        return out

    pol = MLPPolicy(OBS, ACT, hidden=8, seed=2, relevance=rel)
    obs = _obs(1, [1, 0, 1, 1, 1])  # comp 0 forced to 0
    _, logp = pol.act(obs)
    assert logp[0] == 0.0  # log 1 for the forced type, nothing for the ignored component


def test_same_seed_same_samples():
    a = MLPPolicy(OBS, ACT, hidden=8, seed=3).act(_obs(20))[0]
    b = MLPPolicy(OBS, ACT, hidden=8, seed=3).act(_obs(20))[0]
    assert np.array_equal(a, b)


def test_policy_gradient_moves_toward_the_better_arm():
    # two-armed toy: arm 1 pays 1, arm 0 pays 0; GRPO advantages over one group of 64 pulls
    obs_sp = gym.spaces.Dict(
        {"x": gym.spaces.Box(0.0, 1.0, (1,), np.float32), "action_mask": gym.spaces.MultiBinary(2)}
    )
    pol = MLPPolicy(obs_sp, gym.spaces.MultiDiscrete([2]), hidden=16, seed=0)
    opt = torch.optim.Adam(pol.parameters(), lr=0.05)
    obs = {"x": np.ones((64, 1), np.float32), "action_mask": np.ones((64, 2), np.int8)}
    x, masks = pol.encode(obs), torch.from_numpy(obs["action_mask"])

    def p_good():
        lp, _ = pol.log_prob(x[:1], masks[:1], torch.tensor([[1]]))
        return float(lp.detach().exp())

    before = p_good()
    for _ in range(10):
        acts, logp_old = pol.act(obs)
        adv = group_advantages(torch.from_numpy(acts[:, 0]).double(), torch.zeros(64)).advantages
        lp, _ = pol.log_prob(x, masks, torch.from_numpy(acts))
        loss, _ = policy_loss(
            lp[:, None], torch.from_numpy(logp_old).float()[:, None], adv.float(), torch.ones(64, 1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before < 0.6 and p_good() > 0.9


def test_shared_policies_share_one_trunk():
    module, pols = shared_policies(
        {"main": (OBS, ACT), "sub": (OBS, gym.spaces.MultiDiscrete([4, 2]))}
    )
    assert pols["main"].trunk is pols["sub"].trunk
    assert pols["main"].head is not pols["sub"].head
    n_unique = len({id(p) for p in module.parameters()})
    assert n_unique == len(list(module.parameters()))  # the trunk counted once


@pytest.mark.parametrize("seed", [0, 1])
def test_padded_log_softmax_equals_per_component_softmaxes(seed):
    # all components at once (padded to the widest) == one masked log-softmax per component
    g = torch.Generator().manual_seed(seed)
    nvec = np.array([3, 1, 5, 2])
    logits = torch.randn(6, int(nvec.sum()), generator=g)
    masks = (torch.rand(6, int(nvec.sum()), generator=g) < 0.7).to(torch.int8)
    masks[:, 3] = 1  # the one-value component stays allowed
    lp = _masked_log_softmax(logits, masks, nvec)
    start = 0
    for c, size in enumerate(nvec.tolist()):
        lg = logits[:, start : start + size].masked_fill(masks[:, start : start + size] == 0, -1e9)
        torch.testing.assert_close(lp[:, c, :size], torch.log_softmax(lg, -1))
        start += size


def test_token_logprobs_score_only_the_valid_steps():
    """Issue 14 item 2: the policy runs on the gathered valid steps; their values equal a
    step-by-step evaluation, padding gets 0 and no gradient reaches it."""
    from policies.base import TokenBatch

    pol = MLPPolicy(OBS, ACT, hidden=8, seed=3)
    g = torch.Generator().manual_seed(0)
    n, t = 5, 4
    inputs = torch.rand((n, t, pol.input_dim), generator=g, requires_grad=True)
    masks = torch.ones((n, t, 5), dtype=torch.int8)
    masks[1, 2, 0] = 0  # component 0 forced to value 1 on one step
    actions = torch.stack(
        [torch.randint(0, 2, (n, t), generator=g), torch.randint(0, 3, (n, t), generator=g)], -1
    )
    actions[1, 2, 0] = 1
    valid = (torch.arange(t)[None, :] < torch.tensor([4, 3, 1, 2, 4])[:, None]).float()
    batch = TokenBatch(
        torch.zeros((n, t)), valid, {"inputs": inputs, "masks": masks, "actions": actions}
    )
    logp, ent = pol.token_logprobs(batch)
    assert logp.shape == ent.shape == (n, t)
    for i in range(n):
        for j in range(t):
            if valid[i, j] == 0:
                assert logp[i, j] == 0 and ent[i, j] == 0
                continue
            lp1, e1 = pol.log_prob(inputs[i, j][None], masks[i, j][None], actions[i, j][None])
            torch.testing.assert_close(logp[i, j], lp1[0], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(ent[i, j], e1[0], rtol=1e-6, atol=1e-6)
    (logp.sum() + ent.sum()).backward()
    assert inputs.grad[valid == 0].abs().max() == 0
    assert inputs.grad[valid > 0].abs().sum(-1).min() > 0


def test_row_logprobs_equal_token_logprobs_of_the_selected_rows():
    """The update's path (issue 14): rows of the whole batch scored without copying them, the
    same values (bit for bit) and gradients as token_logprobs of batch.select(rows)."""
    from policies.base import TokenBatch

    pol = MLPPolicy(OBS, ACT, hidden=8, seed=3)
    g = torch.Generator().manual_seed(1)
    n, t = 7, 4
    inputs = torch.rand((n, t, pol.input_dim), generator=g)
    masks = torch.ones((n, t, 5), dtype=torch.int8)
    actions = torch.stack(
        [torch.randint(0, 2, (n, t), generator=g), torch.randint(0, 3, (n, t), generator=g)], -1
    )
    valid = (torch.arange(t)[None, :] < torch.tensor([4, 3, 1, 2, 4, 0, 2])[:, None]).float()
    batch = TokenBatch(
        torch.zeros((n, t)), valid, {"inputs": inputs, "masks": masks, "actions": actions}
    )
    rows = torch.tensor([6, 0, 3, 5, 1])
    grads = []
    for fn in (
        lambda: pol.token_logprobs(batch.select(rows)),
        lambda: pol.row_logprobs(batch, rows),
    ):
        pol.zero_grad()
        logp, ent = fn()
        (logp.sum() + 0.5 * ent.sum()).backward()
        grads.append(([q.grad.clone() for q in pol.parameters()], logp.detach(), ent.detach()))
    (g0, lp0, e0), (g1, lp1, e1) = grads
    assert lp0.shape == lp1.shape == (len(rows), t)
    assert torch.equal(lp0, lp1) and torch.equal(e0, e1)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
