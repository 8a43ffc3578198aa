"""The pieces of one M-GRPO step between rollout and logging (DESIGN §3.5, 2-5), as functions.

* :func:`prepare_main` / :func:`prepare_sub`: rewards, alignment and group-relative advantages of
  one role, packed into the policy's training tensors (:class:`Prepared`).
* :func:`update_role`: ``mu`` epochs over minibatches of a role's prepared rows with its
  optimizer; :func:`role_entropy` for a frozen role.

Sub-agent advantage groupings are selected by name from :data:`SUB_ADVANTAGES` (a registry).
Everything here is a pure function of its arguments (the config, the batch, the policies and
optimizers, explicit generators): no files, no global state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policies.base import TokenBatch
from sim._checks import check_choice
from sim.advantages import GroupAdvantages, aligned_group_advantages, group_advantages
from sim.advantages import sub_group_ids as _sub_group_ids
from sim.alignment import Alignment, align
from sim.loss import policy_loss
from sim.rewards import main_reward, sub_reward
from sim.rollout import RolloutBatch

__all__ = [
    "SUB_ADVANTAGES",
    "Prepared",
    "TrainingError",
    "prepare_main",
    "prepare_sub",
    "register_sub_advantages",
    "role_entropy",
    "update_role",
]

LOSS_STATS = ("loss", "clip_frac_low", "clip_frac_high", "approx_kl", "entropy", "grad_norm")


class TrainingError(RuntimeError):
    """A run stopped on bad numbers (NaN/inf loss, gradient or reward), naming step and role."""


@dataclass
class Prepared:
    """A role's training rows for one step (aligned, packed by its policy), their advantages
    ``(num_rows,)`` and row weights ``(num_rows,)``, the rewards of the original (unaligned)
    rows, and the training step that produced each row."""

    tokens: TokenBatch
    adv: torch.Tensor
    weight: torch.Tensor
    rewards: torch.Tensor
    version: torch.Tensor

    def __len__(self) -> int:
        return len(self.tokens)


def _rewards(fn: Callable[[], torch.Tensor], step: int, role: str) -> torch.Tensor:
    try:
        return fn()
    except ValueError as e:
        raise TrainingError(f"step {step}: bad {role} reward: {e}") from e


def _adv_kw(cfg: Any) -> dict[str, Any]:
    a = cfg.adv
    return {"ddof": a.ddof, "eps": a.eps, "scale": a.scale, "std_floor": a.std_floor}


# ---------------------------------------------------------------------- main rows
def prepare_main(
    cfg: Any, batch: RolloutBatch, policy: Any, step: int, metrics: dict[str, Any]
) -> Prepared:
    """R_M per rollout, advantages grouped by query (K rows a group); logs ``main/*``."""
    K = batch.group_size
    traj = batch.main
    r = _rewards(
        lambda: main_reward(batch.format_ok, batch.correct, cfg.reward.alpha), step, "main"
    )
    adv = group_advantages(r, torch.from_numpy(traj.rollout) // K, **_adv_kw(cfg))
    metrics["main/reward_mean"] = float(r.mean())
    metrics["main/reward_std"] = float(r.std(correction=0))
    metrics["main/frac_zero_std"] = adv.stats.frac_zero_std
    metrics["main/correct_rate"] = float((batch.correct == 1.0).mean())
    metrics["main/format_rate"] = float(batch.format_ok.mean())
    metrics["tool/category_error_rate"] = float((batch.category_errors > 0).mean())
    metrics["main/sim_time"] = float(batch.sim_time.mean())
    for k, v in batch.extra.items():
        metrics[f"main/{k}"] = float(np.mean(v))
    version = torch.from_numpy(traj.version)
    return Prepared(policy.pack(traj), adv.advantages.float(), torch.ones(len(r)), r, version)


# ---------------------------------------------------------------------- sub-agent groupings
SubGrouping = Callable[..., tuple[torch.Tensor, GroupAdvantages]]
SUB_ADVANTAGES: dict[str, SubGrouping] = {}
"""name -> ``fn(r, alignment, traj, batch, **adv_kw) -> (aligned advantages, result)``"""


def register_sub_advantages(name: str) -> Callable[[SubGrouping], SubGrouping]:
    """Decorator adding a sub-agent advantage grouping (``algo.sub_grouping``)."""

    def deco(fn: SubGrouping) -> SubGrouping:
        SUB_ADVANTAGES[name] = fn
        return fn

    return deco


@register_sub_advantages("per_query")
def _per_query(r, a: Alignment, traj, batch: RolloutBatch, **kw):
    """All aligned sub rows of a query pooled (the paper), without materialising them."""
    n_roll, K = len(batch.correct), batch.group_size
    res = aligned_group_advantages(r, a, torch.arange(n_roll) // K, **kw)
    return res.advantages, res


@register_sub_advantages("per_invocation")
def _per_invocation(r, a: Alignment, traj, batch: RolloutBatch, **kw):
    """The i-th call across the K rollouts of a query (unaligned rows, as in DSPy)."""
    query = torch.from_numpy(traj.rollout) // batch.group_size
    gid = _sub_group_ids("per_invocation", query, invocation=torch.from_numpy(traj.invocation))
    res = group_advantages(r, gid, **kw)
    return res.advantages[a.index], res


@register_sub_advantages("queue_window")
def _queue_window(r, a: Alignment, traj, batch: RolloutBatch, **kw):
    """Windows of K sub rows in arrival order: rollouts in the order they finished, calls in
    order (the released code)."""
    K = batch.group_size
    query = torch.from_numpy(traj.rollout) // K
    finish_rank = np.argsort(np.argsort(batch.sim_time, kind="stable"), kind="stable")
    rollout = torch.from_numpy(traj.rollout)
    arrival = torch.from_numpy(finish_rank)[rollout] * 10_000 + torch.from_numpy(traj.finish_order)
    gid = _sub_group_ids("queue_window", query, arrival=arrival, window=K)
    res = group_advantages(r, gid, **kw)
    return res.advantages[a.index], res


# ---------------------------------------------------------------------- sub rows
def prepare_sub(
    cfg: Any,
    batch: RolloutBatch,
    role: str,
    role_index: int,
    policy: Any,
    step: int,
    metrics: dict[str, Any],
) -> Prepared | None:
    """R_S per sub row (needs its rollout's c_M), alignment to D per rollout, advantages by the
    configured grouping; logs ``<role>/*``. None when the role was never called this step."""
    traj = batch.trajectories[role]
    n_roll = len(batch.correct)
    metrics[f"{role}/calls_mean"] = float(batch.calls[role].mean())
    if len(traj) == 0:
        for k in ("reward_mean", "reward_std", "frac_zero_std", "expert_mean"):
            metrics[f"{role}/{k}"] = 0.0
        metrics |= {f"{role}/align_{k}": 0 for k in ("duplicated", "dropped")}
        metrics[f"{role}/align_empty"] = n_roll
        return None
    rollout = torch.from_numpy(traj.rollout)
    format_ok = torch.from_numpy(traj.format_ok).float()
    expert = torch.from_numpy(traj.expert).float()
    c_main = torch.from_numpy(batch.correct).float()[rollout]
    r = _rewards(
        lambda: sub_reward(format_ok, c_main, expert, cfg.reward.betas(), cfg.reward.form),
        step,
        role,
    )
    target = cfg.role(role).align_target or cfg.algo.align_target
    a = align(
        rollout,
        n_roll,
        target,
        cfg.algo.align_mode,
        seed=np.random.default_rng([cfg.seed, step, 3, role_index]),
    )
    check_choice("algo.sub_grouping", cfg.algo.sub_grouping, tuple(SUB_ADVANTAGES))
    adv, res = SUB_ADVANTAGES[cfg.algo.sub_grouping](r, a, traj, batch, **_adv_kw(cfg))
    metrics[f"{role}/reward_mean"] = float(r.mean())
    metrics[f"{role}/reward_std"] = float(r.std(correction=0))
    metrics[f"{role}/frac_zero_std"] = res.stats.frac_zero_std
    metrics[f"{role}/expert_mean"] = float(expert.mean())
    for k, v in a.counts().items():
        metrics[f"{role}/align_{k}"] = v
    tokens = policy.pack(traj).select(a.index)
    version = torch.from_numpy(traj.version)[a.index]
    return Prepared(tokens, adv.float(), a.weight.float(), r, version)


# ---------------------------------------------------------------------- update
def update_role(
    cfg: Any,
    role: str,
    p: Prepared,
    policy: Any,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    ref: Any = None,
) -> dict[str, float]:
    """``optim.mu`` epochs of ``optim.minibatches`` minibatches over ``p``; mean loss stats."""
    params = [q for g in optimizer.param_groups for q in g["params"]]
    n = len(p)
    n_mb = min(cfg.optim.minibatches, n)
    max_norm = cfg.optim.max_grad_norm or math.inf
    sums = dict.fromkeys(LOSS_STATS, 0.0)
    count = 0
    for _epoch in range(cfg.optim.mu):
        perm = torch.randperm(n, generator=generator)
        for mb in torch.tensor_split(perm, n_mb):
            b_tokens = p.tokens.select(mb)
            logp, ent = policy.token_logprobs(b_tokens)
            ref_logp = None
            if cfg.loss.kl_coef > 0:
                with torch.no_grad():
                    ref_logp = ref.token_logprobs(b_tokens)[0]
            loss, st = policy_loss(
                logp,
                b_tokens.logp_old,
                p.adv[mb],
                b_tokens.mask,
                eps_low=cfg.loss.eps_low,
                eps_high=cfg.loss.eps_high,
                ratio_level=cfg.loss.ratio_level,
                agg=cfg.loss.agg,
                weights=p.weight[mb],
                ref_logp=ref_logp,
                kl_coef=cfg.loss.kl_coef,
                entropy=ent,
                entropy_coef=cfg.loss.entropy_coef,
            )
            if not torch.isfinite(loss):
                raise TrainingError(f"step {step}: non-finite {role} loss ({loss.item()})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(params, max_norm)
            if not torch.isfinite(gn):
                raise TrainingError(f"step {step}: non-finite {role} gradient norm")
            optimizer.step()
            st["loss"] = float(loss.detach())
            st["grad_norm"] = float(gn)
            for k in LOSS_STATS:
                sums[k] += st[k]
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def role_entropy(p: Prepared, policy: Any) -> float:
    """Mean per-token entropy of a (frozen) role's prepared rows."""
    tokens = p.tokens.select(torch.arange(len(p)))
    _, ent = policy.token_logprobs(tokens)
    valid = tokens.mask
    return float((ent * valid).sum() / valid.sum().clamp(min=1))
