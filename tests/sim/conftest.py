"""Shared helpers of the sim tests."""

from __future__ import annotations

from experiments.config import resolve

TINY = {
    "steps": 3,
    "algo.queries_per_step": 4,
    "algo.group_size": 4,
    "algo.align_target": 3,
    "eval.every": 2,
    "eval.episodes": 8,
    "eval.oracle_episodes": 0,
    "eval.final_episodes": 16,
    "optim.minibatches": 2,
    "checkpoint_every": 1,
}


def tiny_config(env_id: str, **over):
    """A resolved config of a few tiny steps on ``env_id`` (``over``: flat dotted keys)."""
    return resolve(TINY | {"env.id": env_id} | over)
