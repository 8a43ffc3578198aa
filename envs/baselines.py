"""Baseline policies and their success rates on held-out queries (DESIGN §4.2).

Generic part: :func:`evaluate_baseline` runs a baseline on the batched env over held-out queries
(ids >= 2**31) and reports the success rate (c_M == 1 with f_M == 1) with a Wilson 95% CI.

Per-env hook: the vector env class implements
``baseline_policies(self, baseline, rng) -> (main_policy, {role: sub_policy or None})`` for every
baseline but ``random`` (``None`` = the env's default uniform-random sub-agent); the meaning of
each name is the same in every env (``envs/PROTOCOL.md``, "Baselines"). A main policy maps
the batched main observation dict to actions ``(N, n_comp)``; it may read the env's state that is
a pure function of what the agents observe (e.g. the solver's table for the clues in the prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from envs.core.spaces import sample_masked

BASELINES = (
    "oracle",
    "oracle_main+random_sub",
    "oracle_main+vague",
    "random",
    "memorizer",
    "oracle_flat",
)
"""The baselines of DESIGN §4.2, one meaning in every env (``envs/PROTOCOL.md``)."""
HELDOUT_START = 2**31


@dataclass(frozen=True)
class BaselineResult:
    """Success rate of a baseline with its Wilson 95% confidence interval, and its cost."""

    success: float
    """share of episodes with c_M == 1 and f_M == 1"""
    ci_low: float
    ci_high: float
    n: int
    """number of held-out queries (one episode each)"""
    calls: dict[str, float] = field(default_factory=dict)
    """mean d_k per specialist role (flat mode: no role, ``{}``; see ``flat_sessions``)"""
    sim_time: float = 0.0
    """mean simulated completion time of an episode (seconds)"""
    time_per_success: float | None = None
    """total simulated time / successes (None without a success)"""
    flat_sessions: float | None = None
    """flat mode: mean tool sessions per episode (None in hierarchical mode)"""

    @property
    def calls_mean(self) -> dict[str, float]:
        """Alias of :attr:`calls` (mean d_k per role)."""
        return self.calls


def random_main_policy(nvec: np.ndarray, rng: np.random.Generator):
    """Uniform random over the allowed values of each component (owns ``rng``)."""

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        mask = obs["action_mask"]
        return sample_masked(mask, nvec, rng.random((mask.shape[0], len(nvec))))[0]

    return policy


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval for k successes out of n."""
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def run_episodes(vec: Any, main_policy, queries: np.ndarray, seeds: list[int]) -> Sequence[dict]:
    """Run one episode per query on a hierarchical vector env; return the final infos (the
    env's lazy ``final_infos``: a dict is built when it is read; ``vec.final_arrays()`` holds
    the same values as arrays)."""
    obs, _ = vec.reset(seed=seeds, options={"query": queries})
    for _ in range(vec.max_turns + 1):
        if vec.done.all():
            break
        obs, *_ = vec.step(main_policy(obs))
    return vec.final_infos


def evaluate_baseline(
    env_id: str, baseline: str, n_queries: int = 2000, seed: int = 0, **env_kwargs: Any
) -> BaselineResult:
    """Success rate, mean simulated time and calls of ``baseline`` on ``n_queries`` held-out
    queries of ``env_id``.

    Args:
        env_id: a registered id, e.g. ``"mgrpo/RubiksLogic-v0"``.
        baseline: one of :data:`BASELINES`: ``"oracle"``, ``"oracle_main+random_sub"``,
            ``"oracle_main+vague"``, ``"random"`` (uniform over the allowed actions, for M and
            every role: generic), ``"memorizer"``, ``"oracle_flat"`` (built with ``flat=True``:
            the single-agent rules). Every name but ``"random"`` comes from the env's
            ``baseline_policies(baseline, rng)`` hook.
        n_queries: number of held-out queries (ids ``2**31 + seed * n_queries + i``).
        seed: seeds the episodes (``seed * n_queries + i``) and the random policies.
        **env_kwargs: env config (``preset=...``, knobs).
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; valid: {list(BASELINES)}")
    if n_queries < 1:
        raise ValueError(f"n_queries must be >= 1, got {n_queries}")
    if baseline == "oracle_flat":
        if env_kwargs.get("flat") is False:
            raise ValueError("baseline 'oracle_flat' runs the single-agent rules: flat=True")
        env_kwargs = {**env_kwargs, "flat": True}
    vec = gym.make_vec(
        env_id, num_envs=n_queries, vectorization_mode="vector_entry_point", **env_kwargs
    )
    base = vec.unwrapped
    rng = np.random.default_rng([seed, 7919])
    if baseline == "random":
        main = random_main_policy(base.nvec, rng)
        subs: dict[str, Any] = {r: None for r in base.subagent_roles}
    else:
        main, subs = base.baseline_policies(baseline, rng)
    for role, pol in subs.items():
        base.set_subagent(role, pol)
    queries = HELDOUT_START + seed * n_queries + np.arange(n_queries, dtype=np.int64)
    seeds = [seed * n_queries + i for i in range(n_queries)]
    run_episodes(base, main, queries, seeds)
    fin = base.final_arrays()
    vec.close()
    ok = (fin["correct"] == 1.0) & (fin["format_ok"] == 1)
    lo, hi = wilson(int(ok.sum()), n_queries)
    calls = {r: float(np.mean(fin["calls"][r])) for r in base.subagent_roles}
    times = fin["sim_time"].astype(np.float64)
    wins = int(ok.sum())
    sessions = None
    if base.flat:
        sessions = float(np.mean(fin["flat_sessions"]))
    return BaselineResult(
        success=float(ok.mean()),
        ci_low=lo,
        ci_high=hi,
        n=n_queries,
        calls=calls,
        sim_time=float(times.mean()),
        time_per_success=float(times.sum() / wins) if wins else None,
        flat_sessions=sessions,
    )
