"""Collect K rollouts for each of B queries through a batched hierarchical env (DESIGN §3.5, 1).

The result is a :class:`RolloutBatch`, a struct of arrays: one main row per rollout and, per
specialist role, one sub row per delegation, each with its padded per-step inputs, action masks,
actions and behaviour log-probs (what the update needs), plus the reward components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from policies.base import Policy

__all__ = ["RoleRows", "RolloutBatch", "collect_rollouts", "rows_from_records"]


@dataclass
class RoleRows:
    """Trajectories of one role, padded to ``seq_len`` steps (``num_rows`` rows).

    Attributes:
        inputs: ``(num_rows, seq_len, input_dim)`` float32 encoded observations.
        masks: ``(num_rows, seq_len, sum(nvec))`` int8 action masks.
        actions: ``(num_rows, seq_len, n_comp)`` int64.
        logp_old: ``(num_rows, seq_len)`` float32 behaviour log-probs.
        valid: ``(num_rows, seq_len)`` float32, 1 for real steps (the token mask).
        rollout: ``(num_rows,)`` int64 rollout id in ``[0, B*K)`` (query ``rollout // K``).
        invocation: ``(num_rows,)`` int64 call index within its rollout (main rows: 0).
        finish_order: ``(num_rows,)`` int64 order of finishing within its rollout.
        format_ok: ``(num_rows,)`` float32 f (f_M or f_S).
        expert: ``(num_rows,)`` float32 e_S (main rows: 0).
        version: ``(num_rows,)`` int64 training step whose policy produced the row.
    """

    inputs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    valid: torch.Tensor
    rollout: torch.Tensor
    invocation: torch.Tensor
    finish_order: torch.Tensor
    format_ok: torch.Tensor
    expert: torch.Tensor
    version: torch.Tensor

    def __len__(self) -> int:
        return int(self.rollout.shape[0])

    def select(self, index: torch.Tensor) -> RoleRows:
        """Rows ``index`` (any int64 index, repeats allowed)."""
        return RoleRows(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})

    @staticmethod
    def concat(parts: list[RoleRows]) -> RoleRows:
        """Concatenate rows (padding steps to the longest)."""
        t = max(p.valid.shape[1] for p in parts)
        out = {}
        for k in RoleRows.__dataclass_fields__:
            vals = []
            for p in parts:
                v = getattr(p, k)
                if v.dim() >= 2 and v.shape[1] < t:
                    pad = torch.zeros((v.shape[0], t - v.shape[1], *v.shape[2:]), dtype=v.dtype)
                    v = torch.cat([v, pad], 1)
                vals.append(v)
            out[k] = torch.cat(vals, 0)
        return RoleRows(**out)


@dataclass
class RolloutBatch:
    """One step's data: B queries x K rollouts (``N = B*K`` episodes)."""

    queries: np.ndarray
    """``(B,)`` int64 query ids"""
    group_size: int
    """K"""
    main: RoleRows
    """one row per rollout, ``num_rows = N``"""
    subs: dict[str, RoleRows]
    """role -> sub rows (one per delegation), rows sorted by rollout"""
    correct: np.ndarray
    """``(N,)`` c_M"""
    format_ok: np.ndarray
    """``(N,)`` f_M"""
    calls: dict[str, np.ndarray]
    """role -> ``(N,)`` d_k"""
    category_errors: np.ndarray
    """``(N,)``"""
    sim_time: np.ndarray
    """``(N,)`` simulated completion time, seconds"""
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """task metrics from the final info (e.g. ``constraints_kept``, ``distractor_hit``)"""
    env_steps: int = 0
    """main + sub-agent steps taken"""


def _empty_rows(input_dim: int, mask_dim: int, n_comp: int) -> RoleRows:
    z = torch.zeros
    return RoleRows(
        inputs=z((0, 1, input_dim)),
        masks=z((0, 1, mask_dim), dtype=torch.int8),
        actions=z((0, 1, n_comp), dtype=torch.int64),
        logp_old=z((0, 1)),
        valid=z((0, 1)),
        rollout=z(0, dtype=torch.int64),
        invocation=z(0, dtype=torch.int64),
        finish_order=z(0, dtype=torch.int64),
        format_ok=z(0),
        expert=z(0),
        version=z(0, dtype=torch.int64),
    )


def rows_from_records(
    records: list[tuple[int, Any]], policy: Policy, mask_dim: int, version: int
) -> RoleRows:
    """Pad sub-trajectory records ``[(rollout, SubTrajectory), ...]`` into :class:`RoleRows`.

    Observations of all steps of all records are encoded in one call to ``policy.encode``.
    """
    n_comp = len(policy.nvec)
    if not records:  # no delegation in the whole batch
        return _empty_rows(int(policy.input_dim), mask_dim, n_comp)
    lengths = np.array([len(r.actions) for _, r in records])
    n, t_max = len(records), int(lengths.max())
    keys = records[0][1].observations.keys()
    flat_obs = {k: np.concatenate([r.observations[k] for _, r in records]) for k in keys}
    enc = policy.encode(flat_obs)  # (total_steps, input_dim)
    row = np.repeat(np.arange(n), lengths)
    step = np.arange(len(row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    inputs = torch.zeros((n, t_max, enc.shape[1]))
    inputs[row, step] = enc
    masks = torch.zeros((n, t_max, mask_dim), dtype=torch.int8)
    masks[row, step] = torch.from_numpy(flat_obs["action_mask"].astype(np.int8))
    actions = torch.zeros((n, t_max, n_comp), dtype=torch.int64)
    actions[row, step] = torch.from_numpy(np.concatenate([r.actions for _, r in records]))
    logp = torch.zeros((n, t_max))
    logp[row, step] = torch.from_numpy(np.concatenate([r.logp for _, r in records])).float()
    valid = torch.zeros((n, t_max))
    valid[row, step] = 1.0
    return RoleRows(
        inputs=inputs,
        masks=masks,
        actions=actions,
        logp_old=logp,
        valid=valid,
        rollout=torch.tensor([o for o, _ in records], dtype=torch.int64),
        invocation=torch.tensor([r.invocation for _, r in records], dtype=torch.int64),
        finish_order=torch.tensor([r.finish_order for _, r in records], dtype=torch.int64),
        format_ok=torch.tensor([r.format_ok for _, r in records], dtype=torch.float32),
        expert=torch.tensor([r.expert for _, r in records], dtype=torch.float32),
        version=torch.full((n,), version, dtype=torch.int64),
    )


class _Greedy:
    """Sub-agent callable that takes each role policy's most likely allowed action."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.policy.act(obs, greedy=True)


def collect_rollouts(
    env: Any,
    main_policy: Policy,
    sub_policies: dict[str, Policy],
    queries: np.ndarray,
    group_size: int,
    seeds: list[int],
    *,
    version: int = 0,
    greedy: bool = False,
    record_subs: bool = True,
) -> RolloutBatch:
    """Run ``group_size`` rollouts of each query on the batched env ``env`` (``B*K`` episodes).

    Args:
        env: the unwrapped hierarchical vector env with ``num_envs == len(queries) * group_size``.
        main_policy: the main agent's policy.
        sub_policies: role -> policy for every specialist role the env declares.
        queries: ``(B,)`` int64 query ids; rollout ``k`` of query ``b`` is episode ``b*K + k``.
        group_size: K.
        seeds: ``B*K`` episode seeds.
        version: the training step (recorded on every row, for lagged/off-policy data).
        greedy: take the most likely actions (evaluation) instead of sampling.
        record_subs: build the sub rows (training) or skip them (evaluation).
    """
    n = len(queries) * group_size
    if env.num_envs != n:
        raise ValueError(f"env has {env.num_envs} episodes but B*K = {n}")
    for role in env.subagent_roles:
        pol = sub_policies[role]
        env.set_subagent(role, _Greedy(pol) if greedy else pol)
    obs, _ = env.reset(seed=list(seeds), options={"query": np.repeat(queries, group_size)})
    enc, masks, acts, logps, valid = [], [], [], [], []
    env_steps = 0
    for _ in range(env.max_turns + 1):
        active = ~env.done
        if not active.any():
            break
        a, lp = main_policy.act(obs, greedy=greedy)
        enc.append(main_policy.encode(obs))
        masks.append(torch.from_numpy(obs["action_mask"].astype(np.int8)))
        acts.append(torch.from_numpy(a))
        logps.append(torch.from_numpy(lp).float())
        valid.append(torch.from_numpy(active.astype(np.float32)))
        env_steps += int(active.sum())
        obs, *_ = env.step(a)
    infos = env.final_infos
    main = RoleRows(
        inputs=torch.stack(enc, 1),
        masks=torch.stack(masks, 1),
        actions=torch.stack(acts, 1),
        logp_old=torch.stack(logps, 1),
        valid=torch.stack(valid, 1),
        rollout=torch.arange(n),
        invocation=torch.zeros(n, dtype=torch.int64),
        finish_order=torch.zeros(n, dtype=torch.int64),
        format_ok=torch.tensor([i["format_ok"] for i in infos], dtype=torch.float32),
        expert=torch.zeros(n),
        version=torch.full((n,), version, dtype=torch.int64),
    )
    subs = {}
    for role in env.subagent_roles:
        recs = [
            (i, r)
            for i, info in enumerate(infos)
            for r in info["sub_trajectories"]
            if r.role == role
        ]
        env_steps += sum(len(r.actions) for _, r in recs)
        if record_subs:
            mask_dim = int(np.sum(sub_policies[role].nvec))
            subs[role] = rows_from_records(recs, sub_policies[role], mask_dim, version)
    extra = {}
    for key in ("constraints_kept", "distractor_hit"):
        if infos and key in infos[0]:
            extra[key] = np.array([i[key] for i in infos], dtype=np.float64)
    return RolloutBatch(
        queries=np.asarray(queries, dtype=np.int64),
        group_size=group_size,
        main=main,
        subs=subs,
        correct=np.array([i["correct"] for i in infos], dtype=np.float64),
        format_ok=np.array([i["format_ok"] for i in infos], dtype=np.float64),
        calls={r: np.array([i["calls"][r] for i in infos]) for r in env.subagent_roles},
        category_errors=np.array([i["category_errors"] for i in infos], dtype=np.float64),
        sim_time=np.array([i["sim_time"] for i in infos], dtype=np.float64),
        extra=extra,
        env_steps=env_steps,
    )
