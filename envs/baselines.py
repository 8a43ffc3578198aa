"""Baseline policies and their success rates on held-out queries (DESIGN §4.2).

Generic part: :func:`evaluate_baseline` runs a baseline on the batched env over held-out queries
(ids >= 2**31) and reports the success rate (c_M == 1 with f_M == 1) with a Wilson 95% CI.

Per-env hook: the vector env class implements
``baseline_policies(self, baseline, rng) -> (main_policy, {role: sub_policy or None})`` for the
oracle-based baselines (``None`` = the env's default uniform-random sub-agent). A main policy maps
the batched main observation dict to actions ``(N, n_comp)``; it may read the env's state that is
a pure function of what the agents observe (e.g. the solver's table for the clues in the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.core.spaces import sample_masked

BASELINES = ("oracle", "oracle_main+random_sub", "oracle_main+vague", "random")
HELDOUT_START = 2**31


@dataclass(frozen=True)
class BaselineResult:
    """Success rate of a baseline with its Wilson 95% confidence interval."""

    success: float
    """share of episodes with c_M == 1 and f_M == 1"""
    ci_low: float
    ci_high: float
    n: int
    """number of held-out queries (one episode each)"""
    calls_mean: dict[str, float] | None = None
    """mean d_k per role"""


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


def run_episodes(vec: Any, main_policy, queries: np.ndarray, seeds: list[int]) -> list[dict]:
    """Run one episode per query on a hierarchical vector env; return the final infos."""
    obs, _ = vec.reset(seed=seeds, options={"query": queries})
    for _ in range(vec.max_turns + 1):
        if vec.done.all():
            break
        obs, *_ = vec.step(main_policy(obs))
    return list(vec.final_infos)


def evaluate_baseline(
    env_id: str, baseline: str, n_queries: int = 2000, seed: int = 0, **env_kwargs: Any
) -> BaselineResult:
    """Success rate of ``baseline`` on ``n_queries`` held-out queries of ``env_id``.

    Args:
        env_id: a registered id, e.g. ``"mgrpo/RubiksLogic-v0"``.
        baseline: one of ``"oracle"``, ``"oracle_main+random_sub"``, ``"oracle_main+vague"``,
            ``"random"``.
        n_queries: number of held-out queries (ids ``2**31 + seed * n_queries + i``).
        seed: seeds the episodes (``seed * n_queries + i``) and the random policies.
        **env_kwargs: env config (``preset=...``, knobs).
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; valid: {list(BASELINES)}")
    if n_queries < 1:
        raise ValueError(f"n_queries must be >= 1, got {n_queries}")
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
    infos = run_episodes(base, main, queries, seeds)
    ok = np.array([i["correct"] == 1.0 and i["format_ok"] == 1 for i in infos])
    lo, hi = wilson(int(ok.sum()), n_queries)
    calls = {r: float(np.mean([i["calls"][r] for i in infos])) for r in base.subagent_roles}
    vec.close()
    return BaselineResult(float(ok.mean()), lo, hi, n_queries, calls)
