"""Functions the checkers are tested on.

- Reimplementations of TRL's and verl's GRPO advantages, written in our own words from reading
  their sources at the versions named in :mod:`sim.testing.conventions` (TRL v1.9.0,
  ``GRPOTrainer``; verl v0.7.0, ``compute_grpo_outcome_advantage``): not vendored code.
- Deliberately wrong implementations, each with the one mistake its name says.
- Badly behaved functions (raise, wrong shape or dtype, mutate their input).
"""

from __future__ import annotations

import numpy as np
import torch

from sim.advantages import group_advantages
from sim.alignment import align

# --- TRL v1.9.0 -------------------------------------------------------------------------------


def trl_advantages(rewards, group_ids, scale_rewards: str = "group") -> torch.Tensor:
    """TRL's advantages, from its ``(num_prompts, num_generations)`` view generalized to any
    group ids: the group baseline is the mean over non-NaN rewards; the scale is the
    Bessel-corrected std of the group (``"group"``) or of the whole batch (``"batch"``), NaN
    with fewer than two values, plus 1e-4; ``"none"`` keeps only the centring; at the end NaN
    advantages (unscorable rows, groups of one) are set to 0."""
    r = torch.as_tensor(rewards, dtype=torch.float64)
    _, inv = torch.unique(torch.as_tensor(group_ids), return_inverse=True)
    valid = ~torch.isnan(r)
    filled = torch.where(valid, r, torch.zeros_like(r))
    n = torch.zeros(int(inv.max()) + 1, dtype=torch.float64).index_add_(0, inv, valid.double())
    mean = torch.zeros_like(n).index_add_(0, inv, filled) / n
    dev = r - mean[inv]
    sq = torch.where(valid, dev * dev, torch.zeros_like(dev))
    var = torch.zeros_like(n).index_add_(0, inv, sq) / (n - 1)
    std = torch.where(n > 1, var.sqrt(), torch.full_like(var, float("nan")))[inv]
    if scale_rewards == "batch":
        kept = r[valid]
        std = kept.std() if len(kept) > 1 else torch.tensor(float("nan"), dtype=torch.float64)
    adv = dev if scale_rewards == "none" else dev / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


# --- verl v0.7.0 ------------------------------------------------------------------------------


def verl_outcome_advantage(
    token_level_rewards, response_mask, index, epsilon=1e-6, norm_adv_by_std_in_grpo=True
):
    """verl's outcome-reward GRPO advantages, in verl's own signature: the score of a response
    is the sum of its token rewards; responses sharing an ``index`` value form a group; a group
    of a single response is given mean 0 and std 1; larger groups use the mean and the sample
    std (``torch.std``); the score becomes ``(score - mean) / (std + epsilon)``, or only
    ``score - mean`` when ``norm_adv_by_std_in_grpo`` is False, and is broadcast over the
    response tokens. Returns ``(advantages, returns)``, both ``(batch, response_length)``."""
    scores = token_level_rewards.sum(dim=-1)
    members: dict = {}
    for row, key in enumerate(np.asarray(index).tolist()):
        members.setdefault(key, []).append(row)
    adv = torch.empty_like(scores)
    for rows in members.values():
        s = scores[rows]
        if len(rows) == 1:
            mean, std = torch.tensor(0.0), torch.tensor(1.0)
        else:
            mean, std = s.mean(), s.std()
        adv[rows] = (s - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else s - mean
    out = adv[:, None] * response_mask
    return out, out


def verl_adapter(fn, rewards, group_ids, weights):
    """Our ``(rewards, group_ids)`` call in verl's signature: one token per response."""
    ones = torch.ones(len(rewards), 1, dtype=rewards.dtype)
    return fn(rewards[:, None], ones, group_ids.numpy())[0][:, 0]


# --- deliberately wrong advantages ------------------------------------------------------------


def sample_std_advantages(rewards, group_ids):
    """Wrong under the paper's convention: sample std (ddof=1) where population was declared."""
    return group_advantages(rewards, group_ids, ddof=1)


def _group_moments(rewards, group_ids):
    r = np.asarray(rewards, dtype=np.float64)
    _, inv = np.unique(np.asarray(group_ids), return_inverse=True)
    n = np.bincount(inv)
    mean = np.bincount(inv, weights=r) / n
    dev = r - mean[inv]
    var = np.bincount(inv, weights=dev * dev) / n
    return dev, var[inv]


def eps_inside_sqrt_advantages(rewards, group_ids):
    """Wrong: eps added inside the square root, ``dev / sqrt(var + 1e-6)``."""
    dev, var = _group_moments(rewards, group_ids)
    return dev / np.sqrt(var + 1e-6)


def nan_on_constant_advantages(rewards, group_ids):
    """Wrong: no eps and no floor, so a constant group (and a group of one) gives 0 / 0 = NaN."""
    dev, var = _group_moments(rewards, group_ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dev / np.sqrt(var)


def numpy_paper_advantages(rewards, group_ids):
    """Right, in numpy: the paper's convention (population std, eps 1e-6, floor 1e-6)."""
    if not np.isfinite(rewards).all():
        raise ValueError("rewards must be finite")
    dev, var = _group_moments(rewards, group_ids)
    std = np.sqrt(var)
    return np.where(std <= 1e-6, 0.0, dev / np.where(std <= 1e-6, 1.0, std + 1e-6))


# --- badly behaved ----------------------------------------------------------------------------


def raising_advantages(rewards, group_ids):
    raise RuntimeError("boom")


def column_advantages(rewards, group_ids):
    """Wrong shape: ``(num_rows, 1)``."""
    return group_advantages(rewards, group_ids).advantages[:, None]


def integer_advantages(rewards, group_ids):
    """Wrong dtype: rounded to int64."""
    return group_advantages(rewards, group_ids).advantages.round().long()


def mutating_advantages(rewards, group_ids):
    """Right values, but centres ``rewards`` in place."""
    out = group_advantages(rewards, group_ids).advantages
    rewards -= rewards.mean()
    return out


# --- alignment --------------------------------------------------------------------------------


def _loop_align(ids, n_rollouts, target, rng, pick_copy, pick_drop):
    ids = np.asarray(ids, dtype=np.int64)
    out = []
    for k in range(n_rollouts):
        rows = np.flatnonzero(ids == k)
        if len(rows) >= target:
            out.extend(pick_drop(rng, rows, target).tolist())
        elif len(rows):
            out.extend(rows.tolist() + pick_copy(rng, rows, ids, target - len(rows)).tolist())
    return np.asarray(out, dtype=np.int64)


def _own_copies(rng, rows, ids, n):
    return rng.choice(rows, n, replace=True)


def _no_repeat(rng, rows, target):
    return rng.choice(rows, target, replace=False)


def numpy_align(rollout_ids, n_rollouts, target, seed):
    """Right, a per-rollout loop in numpy (``duplicate_drop``)."""
    rng = np.random.default_rng(seed)
    return _loop_align(rollout_ids, n_rollouts, target, rng, _own_copies, _no_repeat)


def other_rollout_duplicates_align(rollout_ids, n_rollouts, target, seed):
    """Wrong: the copies are drawn from all rows of the batch, not the rollout's own."""
    rng = np.random.default_rng(seed)

    def any_row(rng, rows, ids, n):
        return rng.integers(0, len(ids), n)

    return _loop_align(rollout_ids, n_rollouts, target, rng, any_row, _no_repeat)


def drop_with_replacement_align(rollout_ids, n_rollouts, target, seed):
    """Wrong: rollouts above D keep D rows drawn *with* replacement."""
    rng = np.random.default_rng(seed)

    def with_repeats(rng, rows, target):
        return rng.choice(rows, target, replace=True)

    return _loop_align(rollout_ids, n_rollouts, target, rng, _own_copies, with_repeats)


def unseeded_align(rollout_ids, n_rollouts, target, seed):
    """Wrong: ignores the seed (fresh entropy every call)."""
    return align(rollout_ids, n_rollouts, target, seed=None)


def empty_rollouts_padded_align(rollout_ids, n_rollouts, target, seed):
    """Wrong: gives rollouts with d_k = 0 D rows borrowed from row 0; returns (index, rollout)."""
    ids = np.asarray(rollout_ids, dtype=np.int64)
    a = align(ids, n_rollouts, target, seed=seed)
    d = np.bincount(ids, minlength=n_rollouts)
    empty = np.flatnonzero(d == 0)
    if not len(ids):
        return a.index.numpy(), a.rollout.numpy()
    index = np.concatenate([a.index.numpy(), np.zeros(len(empty) * target, np.int64)])
    owner = np.concatenate([a.rollout.numpy(), np.repeat(empty, target)])
    return index, owner


# --- policy losses ----------------------------------------------------------------------------


def _seq_mean_token_mean(per_token, mask):
    return ((per_token * mask).sum(1) / mask.sum(1)).mean()


def one_sided_clip_loss(logp, logp_old, advantages, mask, eps_high=0.28):
    """Wrong: clips only above (``clamp(rho, max=1 + eps_high)``), never below."""
    rho = torch.exp(logp - logp_old)
    a = advantages[:, None]
    pg = torch.maximum(-rho * a, -torch.clamp(rho, max=1 + eps_high) * a)
    return _seq_mean_token_mean(pg, mask)


def padded_token_mean_loss(logp, logp_old, advantages, mask, eps_low=0.2, eps_high=0.28):
    """Wrong for ``token-mean``: divides by every position, padding included."""
    rho = torch.exp((logp - logp_old) * mask)
    a = advantages[:, None]
    pg = torch.maximum(-rho * a, -torch.clamp(rho, 1 - eps_low, 1 + eps_high) * a)
    return (pg * mask).sum() / mask.numel()


def detached_ratio_loss(logp, logp_old, advantages, mask):
    """Wrong: the ratio is computed from detached log-probs, so there is no gradient."""
    rho = torch.exp(logp.detach() - logp_old)
    a = advantages[:, None]
    pg = torch.maximum(-rho * a, -torch.clamp(rho, 0.8, 1.28) * a)
    return _seq_mean_token_mean(pg, mask)
