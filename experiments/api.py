"""The Python API: configure, train, load a trained run and evaluate it (from a notebook or a
script). Every name here is also importable from ``experiments`` itself.

    from experiments import Trainer, evaluate, from_config, load_run

    cfg = from_config("quick", steps=10, **{"algo.group_size": 4, "eval.oracle_episodes": 0})
    Trainer(cfg, "runs/nb", progress=False).train()
    run = load_run("runs/nb")            # config, learner, policies, metrics, step
    res = evaluate(run, n=2000)          # held-out success with a 95% interval, calls, time
    print(res)

:func:`from_config` reads a config the way ``mgrpo train CONFIG --set ...`` does (a preset name, a
TOML file or a dict of dotted keys, then the overrides); :func:`load_run` rebuilds a
:class:`sim.trainer.Learner` from a run directory's ``config.toml`` and ``checkpoint.pt``;
:func:`evaluate` runs the run's policies on held-out queries (ids from ``2**31`` up, the same
queries and episode seeds as ``envs.evaluate_baseline``, so its numbers compare with the
oracle's). Loading and evaluating never write to the run directory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.checkpoint import CHECKPOINT, METRICS, load_checkpoint, read_metrics
from experiments.config import (
    COMMAND_TABLES,
    ConfigError,
    find_config,
    flatten,
    read_config,
    resolve_layers,
)
from experiments.env_check import check_env
from experiments.run import Trainer
from sim.config import TrainConfig

__all__ = [
    "CONFIG_FILE",
    "EVAL_CHUNK",
    "EvalResult",
    "Run",
    "Trainer",
    "evaluate",
    "from_config",
    "load_run",
]

CONFIG_FILE = "config.toml"
"""the resolved config of a run directory (written by ``mgrpo train``)"""
EVAL_CHUNK = 1024
"""the most episodes :func:`evaluate` steps at once (bounds its memory)"""
HELDOUT = 2**31
"""query ids from here up are the held-out split (``sim.trainer.HELDOUT``)"""


# ---------------------------------------------------------------------------------- configs
def from_config(
    config: str | Path | Mapping[str, Any] | None = None, /, **overrides: Any
) -> TrainConfig:
    """A validated :class:`sim.config.TrainConfig`, as ``mgrpo train CONFIG --set ...`` builds it.

    Args:
        config: a preset name (``"quick"``, ``"paper"``: ``experiments/configs/<name>.toml``), a
            TOML file path, a dict of keys (flat dotted ``{"algo.group_size": 4}`` or nested
            tables ``{"algo": {"group_size": 4}}``), or None for the defaults.
        **overrides: flat keys that replace the config's, like ``--set``: ``steps=10`` or
            ``**{"algo.group_size": 4}``. A ``variant`` given here replaces the keys it owns in
            the config (as ``--set variant=...`` does).

    Raises:
        ConfigError: (a ``ValueError``) every problem at once, one message each: unknown keys,
            bad values, a missing file (the message lists the presets), env keys the env
            rejects, unknown role names.

    >>> cfg = from_config("quick", steps=10, **{"algo.group_size": 4})  # doctest: +SKIP
    """
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        raw = {k: v for k, v in config.items() if k not in COMMAND_TABLES}
        base = flatten(raw)
    elif isinstance(config, str | Path):
        base = read_config(find_config(config)).file
    else:
        raise TypeError(
            "config must be a preset name, a TOML path, a dict of keys or None, "
            f"got {type(config).__name__}"
        )
    _, cfg = resolve_layers(base, overrides)
    check_env(cfg)
    return cfg


# ---------------------------------------------------------------------------------- runs
@dataclass(repr=False)
class Run:
    """A trained run loaded from its directory (:func:`load_run`)."""

    run_dir: Path
    """the run directory"""
    config: TrainConfig
    """its resolved config (``config.toml``)"""
    learner: Any
    """a :class:`sim.trainer.Learner` with the checkpoint loaded: policies, optimizers, RNG
    states; ``learner.train_step()`` continues training in memory (no files written)"""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """the rows of ``metrics.jsonl`` (one per completed step; empty if there is none)"""

    @property
    def policies(self) -> dict[str, Any]:
        """role -> policy (``main`` plus every specialist role of the env)."""
        return self.learner.policies

    @property
    def step(self) -> int:
        """completed updates (the checkpoint's step)."""
        return self.learner.step

    def __repr__(self) -> str:
        return (
            f"Run({str(self.run_dir)!r}, step={self.step}, env={self.config.env.id!r}, "
            f"variant={self.config.variant!r}, roles={list(self.policies)})"
        )


def _not_a_run(run_dir: Path, missing: str, why: str) -> FileNotFoundError:
    msg = f"{run_dir} is not a run directory: it has no {missing} ({why})"
    found = sorted(  # runs one to three levels down (an ablation: <env>/<variant>/s<seed>)
        p.parent for depth in (1, 2, 3) for p in run_dir.glob("*/" * depth + CONFIG_FILE)
    )
    if found:
        more = f", ... ({len(found)} in all)" if len(found) > 5 else ""
        msg += "; run directories under it: " + ", ".join(str(p) for p in found[:5]) + more
    return FileNotFoundError(msg)


def load_run(run_dir: str | Path) -> Run:
    """Load a trained run: its config, a learner with the last checkpoint, its metrics.

    Reads ``config.toml`` and ``checkpoint.pt`` (and ``metrics.jsonl`` when present); writes
    nothing. ``roles.<name>.init_from`` is not read again: the checkpoint holds every role.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or lacks ``config.toml`` or
            ``checkpoint.pt`` (the message names what is missing and any run directories
            below it, e.g. for an ablation directory).
        ConfigError: ``config.toml`` is invalid (every problem, one line each).
        ValueError: the checkpoint is unreadable or does not fit the config.
    """
    from sim.trainer import Learner

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it does not exist")
    if not (run_dir / CONFIG_FILE).is_file():
        raise _not_a_run(run_dir, CONFIG_FILE, "the resolved config `mgrpo train` writes")
    if not (run_dir / CHECKPOINT).is_file():
        raise _not_a_run(run_dir, CHECKPOINT, "written every checkpoint_every steps and at the end")
    try:
        cfg = read_config(run_dir / CONFIG_FILE).resolve()[1]
    except ConfigError as e:
        raise ConfigError([f"{run_dir / CONFIG_FILE}: {p}" for p in e.problems]) from e
    state = load_checkpoint(run_dir)
    learner = Learner(cfg)
    try:
        learner.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise ValueError(
            f"{run_dir / CHECKPOINT} does not fit {run_dir / CONFIG_FILE}: {type(e).__name__}: {e}"
        ) from e
    metrics = read_metrics(run_dir / METRICS) if (run_dir / METRICS).is_file() else []
    return Run(run_dir, cfg, learner, metrics)


# ---------------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class EvalResult:
    """Held-out performance of a run's policies (:func:`evaluate`); ``str()`` is a table."""

    success: float
    """share of episodes with c_M == 1 and f_M == 1"""
    ci_low: float
    """Wilson 95% interval of ``success`` (``scipy.stats.binomtest``), lower end"""
    ci_high: float
    """upper end"""
    n: int
    """episodes: one per held-out query"""
    successes: int
    """episodes that succeeded"""
    calls: dict[str, float]
    """role -> mean sub-agent calls per episode (d_k)"""
    sim_time: float
    """mean simulated completion time of an episode, seconds"""
    category_error_rate: float
    """share of episodes with at least one category error"""
    greedy: bool
    """most likely actions (True) or sampled ones"""
    seed: int
    """the held-out slice: queries ``2**31 + seed * n + i``, episode seeds ``seed * n + i``"""
    wall_s: float
    """wall-clock seconds the evaluation took"""
    step: int | None = None
    """the run's completed updates, when known"""
    oracle_success: float | None = None
    """the env's oracle success measured during training (``eval.oracle_episodes``), if any"""
    extra: dict[str, float] = field(default_factory=dict)
    """task metrics' means (e.g. ``constraints_kept``, ``distractor_hit``)"""

    @property
    def oracle_fraction(self) -> float | None:
        """``success / oracle_success`` (None without an oracle reference)."""
        return self.success / self.oracle_success if self.oracle_success else None

    def as_dict(self) -> dict[str, Any]:
        """A flat dict (``calls_<role>``, ``extra`` keys inlined), e.g. for a DataFrame row."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("calls", "extra")}
        d |= {f"calls_{r}": v for r, v in self.calls.items()}
        d |= self.extra
        d["oracle_fraction"] = self.oracle_fraction
        return d

    def table(self) -> str:
        """A small two-column table."""
        how = "greedy" if self.greedy else "sampled"
        rows = [
            (
                "success",
                f"{self.success:.3f}  [{self.ci_low:.3f}, {self.ci_high:.3f}] (95% Wilson)",
            ),
            ("episodes", f"{self.n} held-out, {how} actions, seed {self.seed}"),
        ]
        if self.calls:
            per_role = ", ".join(f"{r} {v:.2f}" for r, v in self.calls.items())
            rows.append(("calls/episode", per_role))
        rows += [
            ("sim time", f"{self.sim_time:.1f} s (mean per episode)"),
            ("category errors", f"{self.category_error_rate:.3f} (share of episodes)"),
        ]
        if self.oracle_success:
            rows.append(
                ("oracle", f"{self.oracle_success:.3f} (fraction {self.oracle_fraction:.3f})")
            )
        rows.append(("wall time", f"{self.wall_s:.2f} s"))
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)

    def __str__(self) -> str:
        return self.table()


def evaluate(run: Any, n: int = 2000, *, seed: int = 0, greedy: bool = True) -> EvalResult:
    """Success of a run's policies on ``n`` held-out queries, one episode each.

    Args:
        run: a :class:`Run` (from :func:`load_run`), a run directory path, or a live
            :class:`experiments.run.Trainer` / :class:`sim.trainer.Learner`.
        n: episodes (held-out queries ``2**31 + seed * n + i``, episode seeds ``seed * n + i``:
            the queries and seeds ``envs.evaluate_baseline`` uses, so the oracle's rate on the
            same ``n`` and ``seed`` compares directly). Stepped in chunks of at most
            :data:`EVAL_CHUNK` episodes.
        seed: which held-out slice, and the policies' sampling streams (``greedy=False``).
        greedy: take the most likely actions (default) or sample them.

    The policies' generators are restored afterwards and the run's own envs are not used, so
    evaluating changes neither the run's files nor its training trajectory.
    """
    from envs.baselines import wilson
    from sim.rollout import collect_rollouts, own_streams
    from sim.trainer import make_env

    if isinstance(run, str | Path):
        run = load_run(run)
    cfg = getattr(run, "config", None) or run.cfg
    policies = run.policies
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    n, seed = int(n), int(seed)
    learner = getattr(run, "learner", run)
    t0 = time.perf_counter()

    queries = HELDOUT + seed * n + np.arange(n, dtype=np.int64)
    seeds = [seed * n + i for i in range(n)]
    envs: dict[int, Any] = {}
    parts = []
    try:
        with own_streams(policies, seed * 1_000_003 + 7_654_321):
            for lo in range(0, n, EVAL_CHUNK):
                hi = min(lo + EVAL_CHUNK, n)
                m = hi - lo
                if m not in envs:
                    envs[m] = make_env(cfg, m)
                env = envs[m]
                subs = {r: policies[r] for r in env.subagent_roles}
                parts.append(
                    collect_rollouts(
                        env,
                        policies["main"],
                        subs,
                        queries[lo:hi],
                        1,
                        seeds[lo:hi],
                        greedy=greedy,
                        record_subs=False,
                    )
                )
    finally:
        for env in envs.values():
            env.close()

    ok = np.concatenate([(b.correct == 1.0) & (b.format_ok == 1) for b in parts])
    k = int(ok.sum())
    lo_ci, hi_ci = wilson(k, n)
    roles = parts[0].calls.keys()
    extra_keys = parts[0].extra.keys()
    return EvalResult(
        success=k / n,
        ci_low=lo_ci,
        ci_high=hi_ci,
        n=n,
        successes=k,
        calls={r: float(np.concatenate([b.calls[r] for b in parts]).mean()) for r in roles},
        sim_time=float(np.concatenate([b.sim_time for b in parts]).mean()),
        category_error_rate=float((np.concatenate([b.category_errors for b in parts]) > 0).mean()),
        greedy=bool(greedy),
        seed=seed,
        wall_s=time.perf_counter() - t0,
        step=getattr(learner, "step", None),
        oracle_success=getattr(learner, "oracle_success", None),
        extra={
            key: float(np.concatenate([b.extra[key] for b in parts]).mean()) for key in extra_keys
        },
    )
