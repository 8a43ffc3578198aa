"""Collect K rollouts for each of B queries through a batched hierarchical env (DESIGN §3.5, 1).

The result is a :class:`RolloutBatch`: per role (``main`` and every specialist) the step's
:class:`sim.records.Trajectories` (what any policy kind needs to recompute its log-probs), plus
the episode outcomes the rewards need. Nothing here depends on the policy kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.records import Trajectories

__all__ = ["RolloutBatch", "collect_rollouts", "concat_batches", "split_action"]


@dataclass
class RolloutBatch:
    """One step's data: B queries x K rollouts (``N = B*K`` episodes)."""

    queries: np.ndarray
    """``(B,)`` int64 query ids"""
    group_size: int
    """K"""
    trajectories: dict[str, Trajectories]
    """role -> trajectories: ``main`` has one row per rollout (row i = rollout i); a specialist
    one row per delegation, sorted by (rollout, invocation). Only with ``record_subs``."""
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
    flat_expert: np.ndarray | None = None
    """``(N,)`` the mean expert score e_S of each episode's finished tool sessions (flat mode's
    ``final_infos[i]["flat_expert"]``; 0 where the env reports none); None: all 0"""
    calls_total: np.ndarray | None = None
    """``(N,)`` calls of all roles per episode: the sum of ``final_infos[i]["calls"]`` plus, in
    flat mode, the single agent's finished tool sessions (``flat_sessions``), its equivalent of
    delegations; None: the sum of :attr:`calls`"""

    def total_calls(self) -> np.ndarray:
        """``(N,)`` calls of all roles per episode."""
        if self.calls_total is not None:
            return self.calls_total
        return sum(self.calls.values(), np.zeros(len(self.correct)))

    def flat_expert_scores(self) -> np.ndarray:
        """``(N,)`` :attr:`flat_expert`, zeros when it is None."""
        if self.flat_expert is None:
            return np.zeros(len(self.correct))
        return self.flat_expert

    @property
    def main(self) -> Trajectories:
        return self.trajectories["main"]


def split_action(out: Any, n: int, who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A policy's ``(actions, logp)`` or ``(actions, logp, handles)`` as three arrays."""
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise ValueError(f"{who} must return (actions, logp) or (actions, logp, handles)")
    handles = out[2] if len(out) == 3 else np.full(n, -1, dtype=np.int64)
    return out[0], np.asarray(out[1], dtype=np.float64), np.asarray(handles, dtype=np.int64)


class _Acting:
    """Sub-agent callable handed to the env: the role's policy, sampled or greedy."""

    def __init__(self, policy: Any, greedy: bool) -> None:
        self.policy, self.greedy = policy, greedy

    def __call__(self, obs: dict[str, np.ndarray]) -> Any:
        return self.policy.act(obs, greedy=self.greedy)


def _sub_trajectories(
    env: Any, role: str, policy: Any, version: int, obs_space: Any, n_comp: int
) -> Trajectories:
    cols = env.sub_records.columns(role)
    if cols is None:
        fields = {k: (sp.shape, sp.dtype) for k, sp in obs_space.spaces.items()}
        return Trajectories.empty(role, fields, n_comp)
    return Trajectories.from_steps(
        role,
        {
            "rollout": cols.owner,
            "invocation": cols.invocation,
            "finish_order": cols.finish_order,
            "format_ok": cols.format_ok,
            "expert": cols.expert,
            "version": np.full(len(cols.owner), version),
        },
        cols.lengths,
        cols.observations,
        cols.actions,
        cols.logp,
        cols.handle,
        policy.export_records(cols.handle),
    )


def _main_act(policy: Any, obs: dict, active: np.ndarray, n: int, greedy: bool):
    """The main policy's actions for all ``n`` rows. A policy with ``active_rows_only = True``
    (a language model: decoding a finished episode is wasted work) sees only the active rows;
    the finished ones get action 0 (ignored by the env), log-prob 0 and handle -1."""
    if not getattr(policy, "active_rows_only", False) or len(active) == n:
        return split_action(policy.act(obs, greedy=greedy), n, "the main policy")
    sub = {k: v[active] for k, v in obs.items()}
    a_, lp_, h_ = split_action(policy.act(sub, greedy=greedy), len(active), "the main policy")
    a = np.zeros((n, a_.shape[1]), dtype=a_.dtype)
    lp = np.zeros(n, dtype=np.float64)
    h = np.full(n, -1, dtype=np.int64)
    a[active], lp[active], h[active] = a_, lp_, h_
    return a, lp, h


@contextmanager
def own_streams(policies: dict[str, Any], base: int) -> Iterator[None]:
    """Sample from streams of their own: policy ``i`` (in ``policies`` order) is reseeded with
    ``base + i`` inside the block and its generator restored after, so evaluation or
    inspection never changes a training trajectory."""
    saved = {r: p.generator.get_state() for r, p in policies.items()}
    for i, p in enumerate(policies.values()):
        p.generator.manual_seed(int(base) + i)
    try:
        yield
    finally:
        for r, p in policies.items():
            p.generator.set_state(saved[r])


def collect_rollouts(
    env: Any,
    main_policy: Any,
    sub_policies: dict[str, Any],
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
        main_policy: the main agent's policy (any kind; see :class:`policies.Policy`).
        sub_policies: role -> policy for every specialist role the env declares.
        queries: ``(B,)`` int64 query ids; rollout ``k`` of query ``b`` is episode ``b*K + k``.
        group_size: K.
        seeds: ``B*K`` episode seeds.
        version: the training step (recorded on every row, for lagged/off-policy data).
        greedy: take the most likely actions (evaluation) instead of sampling.
        record_subs: build the trajectories (training) or skip them (evaluation).
    """
    n = len(queries) * group_size
    if env.num_envs != n:
        raise ValueError(f"env has {env.num_envs} episodes but B*K = {n}")
    for role in env.subagent_roles:
        env.set_subagent(role, _Acting(sub_policies[role], greedy))
    obs, _ = env.reset(seed=list(seeds), options={"query": np.repeat(queries, group_size)})
    # per main turn: the active rows and what they saw and did (ragged, turn-major)
    step_obs: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    rows, acts, logps, handles = [], [], [], []
    env_steps = 0
    for _ in range(env.max_turns + 1):
        active = np.flatnonzero(~env.done)
        if len(active) == 0:
            break
        a, lp, h = _main_act(main_policy, obs, active, n, greedy)
        if record_subs:
            for k, v in obs.items():
                step_obs[k].append(v[active])
            rows.append(active)
            acts.append(a[active])
            logps.append(lp[active])
            handles.append(h[active])
        env_steps += len(active)
        obs, *_ = env.step(a)
    fin = env.final_arrays()
    trajectories: dict[str, Trajectories] = {}
    if record_subs:
        row = np.concatenate(rows)
        order = np.argsort(row, kind="stable")  # turn-major -> row-major
        h = np.concatenate(handles)[order]
        trajectories["main"] = Trajectories.from_steps(
            "main",
            {
                "rollout": np.arange(n),
                "format_ok": fin["format_ok"],
                "version": np.full(n, version),
            },
            np.bincount(row, minlength=n),
            {k: np.concatenate(v)[order] for k, v in step_obs.items()},
            np.concatenate(acts)[order],
            np.concatenate(logps)[order],
            h,
            main_policy.export_records(h),
        )
    for role in env.subagent_roles:
        env_steps += int(env.sub_records.steps(role).sum())
        if record_subs:
            pol = sub_policies[role]
            obs_space, act_space = env.subagent_spaces[role]
            trajectories[role] = _sub_trajectories(
                env, role, pol, version, obs_space, len(act_space.nvec)
            )
    extra = {
        k: fin[k].astype(np.float64) for k in ("constraints_kept", "distractor_hit") if k in fin
    }
    calls = {r: fin["calls"][r] for r in env.subagent_roles}
    n_calls = sum(calls.values(), np.zeros(n, dtype=np.int64)) + fin.get("flat_sessions", 0)
    return RolloutBatch(
        queries=np.asarray(queries, dtype=np.int64),
        group_size=group_size,
        trajectories=trajectories,
        correct=fin["correct"].astype(np.float64),
        format_ok=fin["format_ok"].astype(np.float64),
        calls=calls,
        category_errors=fin["category_errors"].astype(np.float64),
        sim_time=fin["sim_time"].astype(np.float64),
        extra=extra,
        env_steps=env_steps,
        flat_expert=fin.get("flat_expert", np.zeros(n)).astype(np.float64),
        calls_total=n_calls.astype(np.float64),
    )


def _concat_trajectories(
    parts: list[Trajectories], rollout_shifts: list[int], merge: Any
) -> Trajectories:
    """One role's trajectories of several processes, in order: rollout ids shifted by
    ``rollout_shifts`` (each part's first rollout), record handles made distinct (part ``i``'s
    shifted past every earlier part's) and the policy's records merged by ``merge(extras,
    shifts)`` (``LMPolicy.merge_records``; a kind without records of its own needs none)."""
    handle_shifts, top = [], 0
    for t in parts:
        handle_shifts.append(top)
        top += int(t.handle.max()) + 1 if len(t.handle) else 0
    extras = [t.extras for t in parts]
    if any(extras):
        if merge is None:
            raise ValueError(
                f"role {parts[0].role!r}: its policy keeps records of its own but has no "
                "merge_records(parts, shifts), so they cannot be gathered across processes"
            )
        merged = merge(extras, handle_shifts)
    else:
        merged = {}
    pairs = list(zip(parts, rollout_shifts, handle_shifts, strict=True))
    fields = ("invocation", "finish_order", "format_ok", "expert", "version")
    rows = {k: np.concatenate([getattr(t, k) for t in parts]) for k in fields}
    rows["rollout"] = np.concatenate([t.rollout + s for t, s, _ in pairs])
    handles = [np.where(t.handle >= 0, t.handle + h, -1) for t, _, h in pairs]
    return Trajectories.from_steps(
        parts[0].role,
        rows,
        np.concatenate([t.lengths for t in parts]),
        {k: np.concatenate([t.obs[k] for t in parts]) for k in parts[0].obs},
        np.concatenate([t.actions for t in parts]),
        np.concatenate([t.logp for t in parts]),
        np.concatenate(handles),
        merged,
    )


def concat_batches(parts: list[RolloutBatch], merges: dict[str, Any]) -> RolloutBatch:
    """The batch of several processes' rollouts (each a contiguous share of the step's queries,
    in rank order): what one process running all the queries would have recorded, rollout ids
    and record handles renumbered. ``merges``: role -> the policy's ``merge_records`` (or
    None). One part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    n_roll = [len(p.correct) for p in parts]
    shifts = np.concatenate([[0], np.cumsum(n_roll)[:-1]]).tolist()

    def cat(get: Any) -> np.ndarray:
        return np.concatenate([get(p) for p in parts])

    def cat_optional(name: str) -> np.ndarray | None:
        vals = [getattr(p, name) for p in parts]
        return None if any(v is None for v in vals) else np.concatenate(vals)

    return RolloutBatch(
        queries=cat(lambda p: p.queries),
        group_size=first.group_size,
        trajectories={
            role: _concat_trajectories(
                [p.trajectories[role] for p in parts], shifts, merges.get(role)
            )
            for role in first.trajectories
        },
        correct=cat(lambda p: p.correct),
        format_ok=cat(lambda p: p.format_ok),
        calls={r: cat(lambda p, r=r: p.calls[r]) for r in first.calls},
        category_errors=cat(lambda p: p.category_errors),
        sim_time=cat(lambda p: p.sim_time),
        extra={k: cat(lambda p, k=k: p.extra[k]) for k in first.extra},
        env_steps=sum(p.env_steps for p in parts),
        flat_expert=cat_optional("flat_expert"),
        calls_total=cat_optional("calls_total"),
    )
