"""The pieces of one M-GRPO step between rollout and logging (DESIGN §3.5, 2-5), as functions.

* :func:`prepare_main` / :func:`prepare_sub`: rewards, alignment and group-relative advantages of
  one role, packed into the policy's training tensors (:class:`Prepared`).
* :func:`update_role`: ``mu`` epochs over minibatches of a role's prepared rows with its
  optimizer; :func:`role_entropy` for a frozen role.
* :func:`engine_correction`: rows sampled on a rollout engine get the trainer's own old
  log-probs and per-token truncated importance weights (``TokenBatch.data["is_weight"]``), which
  :func:`update_role` multiplies into the advantages.

Sub-agent advantage groupings are selected by name from :data:`SUB_ADVANTAGES` (a registry in
:mod:`sim.sub_groupings`, re-exported here).
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
from sim.advantages import align_advantages, group_advantages
from sim.alignment import align
from sim.distributed import SINGLE, Ranks
from sim.loss import policy_loss
from sim.rewards import judge_expert, main_reward, sub_reward
from sim.rollout import RolloutBatch
from sim.sub_groupings import SUB_ADVANTAGES, register_sub_advantages

__all__ = [
    "SUB_ADVANTAGES",
    "Prepared",
    "TrainingError",
    "check_tensor",
    "distinct_rows",
    "engine_correction",
    "fail",
    "prepare_main",
    "prepare_sub",
    "register_sub_advantages",
    "role_entropy",
    "update_role",
]

LOSS_STATS = ("loss", "clip_frac_low", "clip_frac_high", "approx_kl", "entropy", "grad_norm")


class TrainingError(RuntimeError):
    """A run stopped on bad numbers: a non-finite reward, advantage, log-prob, loss, gradient,
    parameter or metric, or a divergence guard (``optim.grad_norm_limit``,
    ``optim.param_norm_limit``); the message names the step, the role and the quantity."""


def fail(step: int, role: str, what: str) -> TrainingError:
    """The error of step ``step`` (0-based, named as its metrics row: ``step + 1``) of ``role``."""
    return TrainingError(f"step {step + 1}, role {role}: {what}")


def _bad_values(t: torch.Tensor) -> str:
    """``"3 of 24 values, e.g. nan"`` for the non-finite entries of ``t``."""
    bad = t[~torch.isfinite(t)]
    return f"{bad.numel()} of {t.numel()} values, e.g. {bad[0].item()}"


def check_tensor(step: int, role: str, quantity: str, t: torch.Tensor, hint: str = "") -> None:
    """Raise :class:`TrainingError` when ``t`` holds NaN/inf."""
    if not bool(torch.isfinite(t).all()):
        raise fail(step, role, f"{quantity} not finite ({_bad_values(t)}){hint}")


@dataclass
class Prepared:
    """A role's training rows for one step (aligned, packed by its policy), their advantages
    ``(num_rows,)`` and row weights ``(num_rows,)``, the rewards of the original (unaligned)
    rows, and the training step that produced each row.

    ``source`` ``(num_rows,)`` int64, optional: the original row each row copies (alignment
    duplicates rows). Rows with the same source hold the same inputs, so the update runs the
    policy once per source row of a minibatch and repeats its output (same values and
    gradients, up to float rounding)."""

    tokens: TokenBatch
    adv: torch.Tensor
    weight: torch.Tensor
    rewards: torch.Tensor
    version: torch.Tensor
    source: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.tokens)


_WEIGHTS_HINT = "; lower the reward weights (reward.alpha, reward.beta)"


def _rewards(fn: Callable[[], torch.Tensor], step: int, role: str) -> torch.Tensor:
    try:
        r = fn()
    except ValueError as e:
        raise fail(step, role, f"bad reward: {e}") from e
    check_tensor(step, role, "rewards are", r, _WEIGHTS_HINT)
    return r


def _advantages(fn: Callable[[], Any], step: int, role: str) -> Any:
    """The result of an advantage function, its ``ValueError`` and any NaN/inf advantage (e.g.
    a group std that overflows) as a :class:`TrainingError`."""
    try:
        out = fn()
    except ValueError as e:
        raise fail(step, role, f"bad advantages: {e}") from e
    adv = out[0] if isinstance(out, tuple) else out.advantages
    check_tensor(step, role, "advantages are", adv, _WEIGHTS_HINT)
    return out


def _adv_kw(cfg: Any) -> dict[str, Any]:
    a = cfg.adv
    return {"ddof": a.ddof, "eps": a.eps, "scale": a.scale, "std_floor": a.std_floor}


def _judge(cfg: Any, expert: torch.Tensor, step: int, stream: list[int]) -> torch.Tensor:
    """``expert`` as the configured judge reports it (``reward.judge``, ``judge_noise``,
    ``judge_bias``), drawn from a generator seeded by (seed, step, ``stream``)."""
    rc = cfg.reward
    rng = np.random.default_rng([cfg.seed, step, *stream])
    return judge_expert(expert, rc.judge, rc.judge_noise, rc.judge_bias, rng)


# ---------------------------------------------------------------------- main rows
def prepare_main(
    cfg: Any, batch: RolloutBatch, policy: Any, step: int, metrics: dict[str, Any]
) -> Prepared:
    """R_M per rollout, advantages grouped by query (K rows a group); logs ``main/*``.

    ``R_M = f_M (a1 + a2 c_M) + b3 e_flat - time_cost * sim_time - call_cost * calls``: the
    flat-shaping term (``reward.flat_shaping``, e_flat judged as e_S is) and the costs
    (``reward.time_cost``, ``reward.call_cost``; calls of all roles) only when enabled.
    """
    K = batch.group_size
    traj = batch.main
    rc = cfg.reward
    calls = batch.total_calls()
    flat_true = flat = None
    if rc.flat_shaping:
        flat_true = torch.from_numpy(batch.flat_expert_scores())
        flat = _rewards(lambda: _judge(cfg, flat_true, step, [4, 1 << 16]), step, "main")
    r = _rewards(
        lambda: main_reward(
            batch.format_ok,
            batch.correct,
            rc.alpha,
            expert=flat,
            expert_weight=rc.betas()[2] if rc.flat_shaping else 0.0,
            sim_time=batch.sim_time,
            time_cost=rc.time_cost,
            calls=calls,
            call_cost=rc.call_cost,
        ),
        step,
        "main",
    )
    gid = torch.from_numpy(traj.rollout) // K
    adv = _advantages(lambda: group_advantages(r, gid, **_adv_kw(cfg)), step, "main")
    metrics["main/reward_mean"] = float(r.mean())
    metrics["main/reward_std"] = float(r.std(correction=0))
    metrics["main/frac_zero_std"] = adv.stats.frac_zero_std
    metrics["main/correct_rate"] = float((batch.correct == 1.0).mean())
    metrics["main/format_rate"] = float(batch.format_ok.mean())
    metrics["tool/category_error_rate"] = float((batch.category_errors > 0).mean())
    metrics["main/sim_time"] = float(batch.sim_time.mean())
    metrics["main/calls_total_mean"] = float(np.mean(calls))
    if flat is not None:
        metrics["main/flat_expert_mean"] = float(flat.mean())
        metrics["main/flat_expert_true_mean"] = float(flat_true.mean())
    for k, v in batch.extra.items():
        metrics[f"main/{k}"] = float(np.mean(v))
    version = torch.from_numpy(traj.version)
    return Prepared(policy.pack(traj), adv.advantages.float(), torch.ones(len(r)), r, version)


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
    """R_S per sub row (needs its rollout's c_M; e_S as the configured judge reports it),
    alignment to D per rollout, advantages by the configured grouping; logs ``<role>/*``
    (``expert_mean`` as judged, ``expert_true_mean`` the env's score). None when the role was
    never called this step."""
    traj = batch.trajectories[role]
    n_roll = len(batch.correct)
    metrics[f"{role}/calls_mean"] = float(batch.calls[role].mean())
    if len(traj) == 0:
        for k in (
            "reward_mean",
            "reward_std",
            "frac_zero_std",
            "expert_mean",
            "expert_true_mean",
            "format_rate",
        ):
            metrics[f"{role}/{k}"] = 0.0
        metrics |= {f"{role}/align_{k}": 0 for k in ("duplicated", "dropped")}
        metrics[f"{role}/align_empty"] = n_roll
        return None
    rollout = torch.from_numpy(traj.rollout)
    format_ok = torch.from_numpy(traj.format_ok).float()
    expert_true = torch.from_numpy(traj.expert).float()
    expert = _rewards(lambda: _judge(cfg, expert_true, step, [4, role_index]), step, role)
    c_main = torch.from_numpy(batch.correct).float()[rollout]
    r = _rewards(
        lambda: sub_reward(format_ok, c_main, expert, cfg.reward.betas(), cfg.reward.form),
        step,
        role,
    )
    target = cfg.role(role).align_target or cfg.algo.align_target
    seed = np.random.default_rng([cfg.seed, step, 3, role_index])
    check_choice("algo.sub_grouping", cfg.algo.sub_grouping, tuple(SUB_ADVANTAGES))
    if cfg.algo.sub_grouping == "per_query":  # alignment and advantages in one pass
        K, mode, kw = batch.group_size, cfg.algo.align_mode, _adv_kw(cfg)
        groups = torch.arange(n_roll) // K
        try:
            a, res = align_advantages(r, rollout, n_roll, target, groups, mode, seed, **kw)
        except ValueError as e:
            raise fail(step, role, f"bad advantages: {e}") from e
        adv = _advantages(lambda: res, step, role).advantages
    else:
        a = align(rollout, n_roll, target, cfg.algo.align_mode, seed=seed)
        grouping = SUB_ADVANTAGES[cfg.algo.sub_grouping]
        adv, res = _advantages(lambda: grouping(r, a, traj, batch, **_adv_kw(cfg)), step, role)
    metrics[f"{role}/format_rate"] = float(format_ok.mean())
    metrics[f"{role}/reward_mean"] = float(r.mean())
    metrics[f"{role}/reward_std"] = float(r.std(correction=0))
    metrics[f"{role}/frac_zero_std"] = res.stats.frac_zero_std
    metrics[f"{role}/expert_mean"] = float(expert.mean())  # as judged
    metrics[f"{role}/expert_true_mean"] = float(expert_true.mean())
    for k, v in a.counts().items():
        metrics[f"{role}/align_{k}"] = v
    tokens = policy.pack(traj).select(a.index)
    version = torch.from_numpy(traj.version)[a.index]
    return Prepared(tokens, adv.float(), a.weight.float(), r, version, a.index)


# ---------------------------------------------------------------------- engine rows
def engine_correction(p: Prepared, policy: Any, cap: float) -> tuple[Prepared, dict[str, float]]:
    """Rows sampled on a rollout engine, rescored by ``policy.rescore`` (the trainer's old
    log-probs, ``data["is_weight"]``), and the metrics ``rollout_logp_diff`` (largest
    |trainer - engine| log-prob), ``is_weight_mean`` (over sampled tokens) and
    ``is_clip_frac`` (share of sampled tokens whose weight is at ``cap``); the weight metrics
    are left out when no token was sampled."""
    tokens, gap = policy.rescore(p.tokens, cap)
    out = {"rollout_logp_diff": gap}
    on = tokens.mask > 0
    if bool(on.any()):
        w = tokens.data["is_weight"][on]
        out["is_weight_mean"] = float(w.mean())
        out["is_clip_frac"] = float((w >= float(cap)).float().mean())
    return Prepared(tokens, p.adv, p.weight, p.rewards, p.version, p.source), out


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
    on_progress: Callable[[str], None] | None = None,
    ranks: Ranks = SINGLE,
) -> dict[str, float]:
    """``optim.mu`` epochs of ``optim.minibatches`` minibatches over ``p``; mean loss stats.

    Stops with :class:`TrainingError` (before the optimizer step that would use them) on
    non-finite log-probs, loss or gradient norm, and on a gradient norm before clipping above
    ``optim.grad_norm_limit``; after the update, on non-finite parameters or a parameter norm
    above ``optim.param_norm_limit`` (0 disables a limit). ``on_progress`` is called with
    ``"update ROLE epoch e/mu"`` at the start of each epoch.

    Also returns ``rollout_logp_diff``: the largest |behaviour log-prob - recomputed log-prob|
    over the sampled tokens of the first minibatch of the first epoch (scored before any
    optimizer step, so it measures how exactly the policy recomputes what it sampled: ~0 for an
    in-process sampler), and ``tokens``: the sampled tokens of ``p`` (mask sum).

    Rows with per-token importance weights (``p.tokens.data["is_weight"]``, from
    :func:`engine_correction`) have their advantages multiplied by them, token by token.

    Several processes (``ranks``, :mod:`sim.distributed`): every rank holds the same global
    ``p`` and the same ``generator`` state, so all draw the same minibatches; each computes its
    share of every minibatch (:meth:`~sim.distributed.Ranks.share`), normalised by the
    minibatch's global counts, and the gradients are summed over ranks before clipping by the
    global norm: the update of one process on all of ``p``, up to float rounding.
    """
    params = [q for g in optimizer.param_groups for q in g["params"]]
    n = len(p)
    n_mb = min(cfg.optim.minibatches, n)
    max_norm = cfg.optim.max_grad_norm or math.inf
    grad_limit = cfg.optim.grad_norm_limit or math.inf
    sums = dict.fromkeys(LOSS_STATS, 0.0)
    count = 0
    logp_diff = 0.0
    for epoch in range(cfg.optim.mu):
        if on_progress is not None:
            on_progress(f"update {role} epoch {epoch + 1}/{cfg.optim.mu}")
        perm = torch.randperm(n, generator=generator)
        for mb in torch.tensor_split(perm, n_mb):
            mb, b_weight = ranks.share(mb, p.weight)
            # the loss's per-token tensors; the policy's inputs are selected once, in _recompute
            b_tokens = TokenBatch(p.tokens.logp_old[mb], p.tokens.mask[mb])
            logp, ent = _recompute(policy, p, mb)
            if count == 0:
                logp_diff = ranks.max(_logp_diff(logp, b_tokens))
            ref_logp = None
            if cfg.loss.kl_coef > 0:
                with torch.no_grad():
                    ref_logp = ref.token_logprobs(p.tokens.select(mb))[0]
            adv = p.adv[mb]
            is_weight = p.tokens.data.get("is_weight")
            if is_weight is not None:  # engine rollouts: truncated importance weights per token
                adv = adv[:, None] * is_weight[mb].to(adv.device, adv.dtype)
            try:
                loss, st = policy_loss(
                    logp,
                    b_tokens.logp_old,
                    adv,
                    b_tokens.mask,
                    eps_low=cfg.loss.eps_low,
                    eps_high=cfg.loss.eps_high,
                    ratio_level=cfg.loss.ratio_level,
                    agg=cfg.loss.agg,
                    weights=b_weight,
                    ref_logp=ref_logp,
                    kl_coef=cfg.loss.kl_coef,
                    entropy=ent,
                    entropy_coef=cfg.loss.entropy_coef,
                )
            except ValueError as e:  # NaN/inf log-probs, entropies or advantages
                raise fail(step, role, f"loss inputs are not finite: {e}{_LR_HINT}") from e
            loss, st = ranks.global_loss(loss, st, cfg.loss.agg, b_tokens.mask, b_weight)
            value = float(loss.detach()) if ranks.world == 1 else st["loss"]
            if not math.isfinite(value):
                raise fail(step, role, f"loss is not finite ({value}){_LR_HINT}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ranks.reduce_grads(params)
            gn = ranks.clip_grad_norm(params, max_norm)
            if not torch.isfinite(gn):
                raise fail(step, role, f"gradient norm is not finite ({gn.item()}){_LR_HINT}")
            if gn > grad_limit:
                raise fail(
                    step,
                    role,
                    f"gradient norm before clipping {gn.item():.4g} exceeds "
                    f"optim.grad_norm_limit = {cfg.optim.grad_norm_limit:g}: the run is "
                    "diverging; lower optim.lr, or raise the limit (0 disables it)",
                )
            try:
                optimizer.step()
            except RuntimeError as e:  # e.g. "value cannot be converted ... without overflow"
                raise fail(step, role, f"optimizer step failed: {e}{_LR_HINT}") from e
            st["loss"] = value
            st["grad_norm"] = float(gn)
            for k in LOSS_STATS:
                sums[k] += st[k]
            count += 1
    _check_params(cfg, role, params, step, ranks)
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out["rollout_logp_diff"] = logp_diff
    out["tokens"] = float(p.tokens.mask.sum())
    return out


def _recompute(policy: Any, p: Prepared, mb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``policy.token_logprobs`` of minibatch ``mb`` of ``p``, run once per distinct source row
    (the copies alignment made share it) and gathered back to ``(len(mb), seq_len)``."""
    rows_fn = getattr(policy, "row_logprobs", None)  # scores rows without copying them first

    def score(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if rows_fn is not None:
            return rows_fn(p.tokens, rows)
        return policy.token_logprobs(p.tokens.select(rows))

    if p.source is not None and len(mb) > 0:
        first, inv = distinct_rows(p.source[mb])
        if len(first) < len(mb):
            logp, ent = score(mb[first])
            return logp[inv], ent[inv]
    return score(mb)


def distinct_rows(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)`` of ``ids (n,)``: the position of each distinct value's first
    occurrence ``(m,)`` and, per position, the index of its value among them ``(n,)``, so
    ``ids[first][inverse] == ids``."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    first = torch.full((len(uniq),), len(ids), dtype=torch.long)
    first.scatter_reduce_(0, inv, torch.arange(len(ids)), "amin")
    return first, inv


def _logp_diff(logp: torch.Tensor, tokens: Any) -> float:
    """max |recomputed - behaviour log-prob| over the sampled tokens (0.0 if none)."""
    on = tokens.mask > 0
    if not bool(on.any()):
        return 0.0
    return float((logp.detach() - tokens.logp_old).abs()[on].max())


_LR_HINT = (
    "; lower optim.lr (or loss.kl_coef, loss.entropy_coef), or clip gradients (optim.max_grad_norm)"
)


@torch.no_grad()
def _check_params(
    cfg: Any, role: str, params: list[torch.Tensor], step: int, ranks: Ranks = SINGLE
) -> None:
    """The divergence guard on a role's parameters after its update."""
    if not params:
        return
    f64 = torch.float64  # huge but finite parameters must not overflow the norm
    if ranks.world == 1:
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(q.detach(), dtype=f64) for q in params])
        )
    else:  # sharded parameters: the norm of the whole
        norm = ranks.sq_norm(params).sqrt()
    if not torch.isfinite(norm):
        bad = sum(int((~torch.isfinite(q)).sum()) for q in params)
        if bad:
            what = f"parameters are not finite ({bad} values are NaN/inf)"
            raise fail(step, role, what + _LR_HINT)
    limit = cfg.optim.param_norm_limit
    if limit and norm > limit:
        raise fail(
            step,
            role,
            f"parameter norm {norm.item():.4g} exceeds optim.param_norm_limit = {limit:g}: the "
            "run is diverging; lower optim.lr, or raise the limit (0 disables it)",
        )


@torch.no_grad()
def role_entropy(p: Prepared, policy: Any) -> dict[str, float]:
    """A frozen role's ``entropy`` (mean per token), ``rollout_logp_diff`` (over all its
    sampled tokens) and ``tokens``."""
    tokens = p.tokens.select(torch.arange(len(p)))
    with torch.no_grad():
        logp, ent = policy.token_logprobs(tokens)
    valid = tokens.mask
    return {
        "entropy": float((ent * valid).sum() / valid.sum().clamp(min=1)),
        "rollout_logp_diff": _logp_diff(logp, tokens),
        "tokens": float(valid.sum()),
    }
