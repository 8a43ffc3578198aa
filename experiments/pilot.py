"""The paper's rule for the alignment target D (issue 10, item 6): a pilot run.

The paper sets D_max from the distribution of sub-agent calls d_k in a pilot run: D is the
smallest value with P(d_k <= D) >= 0.99 (:func:`sim.alignment.target_from_counts`).
:func:`pilot_counts` plays ``batches`` rollout batches (B x K episodes each, sampled actions,
no update) of a config with its initial policies, ``roles.<r>.init_from`` loaded (in a stage-1
grid: the stage-1 checkpoint), on training queries from a stream of their own; it collects d_k
per rollout and specialist role. :func:`pilot_align_target` pools every specialist role's counts
and returns D.

In an ablation grid, ``[ablate.pilot]`` makes every cell's ``algo.align_target`` the pilot's D::

    [ablate.pilot]
    batches = 4         # rollout batches of B x K episodes (default 4; <= 1000)
    quantile = 0.99     # P(d_k <= D) >= quantile (default 0.99; in (0, 1])

One pilot per env, run once (by the first stage-2 cell to need it, under a file lock) with the
policies the grid's first seed starts from and the stage-2 env settings; its D, counts and
settings go to ``OUT/<env>/pilot.json`` (reused on a rerun with the same settings) and the
chosen integer D to every cell's ``config.toml``. One D for all seeds keeps the seeds of a
variant one line in plots and reports. A grid that also sets ``algo.align_target`` is refused
(``--set ablate.pilot=false`` keeps the config's D).

Example:
    >>> target_from_pilot({"sub": [1, 2, 2, 3, 9]}, quantile=0.8)  # P(d <= 3) = 4/5
    3
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.atomic import atomic_write

if TYPE_CHECKING:
    from sim.config import TrainConfig

__all__ = ["PilotSpec", "ensure_pilot", "pilot_align_target", "pilot_counts", "target_from_pilot"]

BATCHES_MAX = 1000
"""the most pilot batches"""
PILOT_FILE = "pilot.json"
_STREAM = 2**40
"""offset of the pilot's query stream (training steps use ``[seed, step, 1]``)"""


@dataclass(frozen=True)
class PilotSpec:
    """One env's pilot in a grid: where it goes and what it plays."""

    path: Path
    """``OUT/<env>/pilot.json``"""
    flat: dict[str, Any]
    """the resolved dotted keys of the pilot's config (the first seed's stage-2 setting)"""
    batches: int = 4
    """rollout batches of B x K episodes"""
    quantile: float = 0.99
    """P(d_k <= D) >= quantile"""


def read_table(keys: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """``[ablate.pilot]`` keys -> ``({"batches": n, "quantile": q}, problems)``."""
    if keys is None:
        return None, []
    out, problems = {"batches": 4, "quantile": 0.99}, []
    for k, v in keys.items():
        if k == "batches":
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= BATCHES_MAX:
                problems.append(
                    f"[ablate.pilot] batches = {v!r} is invalid; allowed: an integer in "
                    f"[1, {BATCHES_MAX}]"
                )
        elif k == "quantile":
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
                problems.append(
                    f"[ablate.pilot] quantile = {v!r} is invalid; allowed: a number in (0, 1]"
                )
        else:
            problems.append(f"unknown key [ablate.pilot] {k}; allowed: batches, quantile")
            continue
        out[k] = v
    return out, problems


def pilot_counts(cfg: TrainConfig, *, batches: int = 4) -> dict[str, np.ndarray]:
    """d_k per rollout and specialist role: ``role -> (batches * B * K,)`` ints, from
    ``batches`` rollout batches of ``cfg`` with its initial (``init_from``) policies."""
    from experiments.run import _role_params
    from sim.rollout import collect_rollouts
    from sim.trainer import Learner

    roles = list(dict.fromkeys(["main", *cfg.roles]))
    learner = Learner(cfg, role_params=_role_params(cfg, roles))
    B, K = cfg.algo.queries_per_step, cfg.algo.group_size
    counts: dict[str, list[np.ndarray]] = {r: [] for r in learner.roles}
    subs = {r: learner.policies[r] for r in learner.roles}
    for i in range(batches):
        rng = np.random.default_rng([cfg.seed, _STREAM + i, 1])
        queries = rng.integers(0, 2**31, B, dtype=np.int64)
        seeds = rng.integers(0, 2**31, B * K).tolist()
        batch = collect_rollouts(
            learner.env, learner.policies["main"], subs, queries, K, seeds, record_subs=False
        )
        for r in learner.roles:
            counts[r].append(np.asarray(batch.calls[r], dtype=np.int64))
    return {r: np.concatenate(c) for r, c in counts.items()}


def target_from_pilot(counts: dict[str, Any], quantile: float = 0.99) -> int | None:
    """D from pooled d_k counts of every role (None when there is no specialist role)."""
    from sim.alignment import target_from_counts

    pooled = [np.asarray(c, dtype=np.int64).ravel() for c in counts.values()]
    if not pooled:
        return None
    return target_from_counts(np.concatenate(pooled), quantile)


def pilot_align_target(cfg: TrainConfig, *, batches: int = 4, quantile: float = 0.99) -> int | None:
    """The paper's D for ``cfg``: the ``quantile`` of d_k over ``batches`` pilot batches
    (:func:`pilot_counts`); None for a flat env (no specialist, no alignment)."""
    return target_from_pilot(pilot_counts(cfg, batches=batches), quantile)


def ensure_pilot(spec: PilotSpec) -> int | None:
    """The grid's pilot D: read from ``spec.path`` when it holds a pilot of the same settings,
    else computed and written (atomically, under a lock: one worker computes, the others wait)."""
    from experiments.config import dump_toml, resolve

    cfg = resolve(spec.flat)
    settings = {"batches": spec.batches, "quantile": spec.quantile, "config": dump_toml(cfg)}
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rec = json.loads(spec.path.read_text())
            if rec.get("settings") == settings:
                return rec["align_target"]
        except (OSError, ValueError, KeyError):
            pass
        counts = pilot_counts(cfg, batches=spec.batches)
        d = target_from_pilot(counts, spec.quantile)
        hist = {r: np.bincount(c).tolist() for r, c in counts.items()}
        rec = {"align_target": d, "histogram": hist, "settings": settings}
        atomic_write(spec.path, json.dumps(rec, indent=1), prefix=".pilot-", suffix="")
        return d
