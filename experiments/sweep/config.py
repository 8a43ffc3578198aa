"""The ``[sweep]`` table (:class:`SweepConfig`), reading a sweep config and each trial's
training config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, read_config, resolve
from sim.config import TrainConfig

__all__ = ["DEFAULT_METRIC", "SweepConfig", "load_sweep", "trial_config"]

DEFAULT_METRIC = "eval/success_greedy"


@dataclass
class SweepConfig:
    """The ``[sweep]`` table: the search space and how trials are scored, pruned and retried."""

    align_target: tuple[int, int] = (1, 16)
    """D range ``[low, high]`` (integers in [1, 1024]); low == high fixes D"""
    local_share: tuple[float, float] = (0.0, 1.0)
    """w range ``[low, high]`` in [0, 1]; low == high fixes w"""
    b1: tuple[float, float] | None = None
    """b1 = ``reward.beta[0]`` range in [0, 1]; None keeps the config's b1"""
    seeds: int = 1
    """seeds per trial: the config's seed, seed + 1, ... (<= 100)"""
    metric: str = DEFAULT_METRIC
    """the eval/ metric scored at each evaluation row and at the budget"""
    direction: str = "maximize"
    """``maximize`` or ``minimize`` the metric"""
    pruner: str = "median"
    """``median`` or ``none`` (single-objective only)"""
    n_startup_trials: int = 2
    """MedianPruner: no pruning until this many trials have finished (<= 100_000)"""
    n_warmup_steps: int = 0
    """MedianPruner: no pruning before this many training steps (<= 10_000_000)"""
    population_size: int = 16
    """NSGA-II population size (multi-objective; <= 10_000)"""
    heartbeat_interval: int = 60
    """seconds between heartbeats of a running trial (RDB storages; <= 86_400)"""
    grace_period: int = 120
    """seconds without heartbeat after which a running trial is stale (failed and retried;
    <= 604_800)"""
    max_retry: int = 3
    """how many times a stale trial is re-enqueued (<= 100)"""

    def __post_init__(self) -> None:
        problems = []
        self.align_target = _range("sweep.align_target", self.align_target, int, 1, 1024, problems)  # type: ignore[assignment]
        self.local_share = _range("sweep.local_share", self.local_share, float, 0.0, 1.0, problems)  # type: ignore[assignment]
        if self.b1 is not None:
            self.b1 = _range("sweep.b1", self.b1, float, 0.0, 1.0, problems)  # type: ignore
        for key, lo, hi in (
            ("seeds", 1, 100),
            ("n_startup_trials", 0, 100_000),
            ("n_warmup_steps", 0, 10_000_000),
            ("population_size", 2, 10_000),
            ("heartbeat_interval", 1, 86_400),
            ("grace_period", 1, 604_800),
            ("max_retry", 0, 100),
        ):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                problems.append(
                    f"sweep.{key} = {v!r} is invalid; allowed: an integer >= {lo} and <= {hi:_}"
                )
        if not isinstance(self.metric, str) or not self.metric.startswith("eval/"):
            problems.append(
                f"sweep.metric = {self.metric!r} is invalid; allowed: an eval/ key, "
                "e.g. eval/success_greedy, eval/success, eval/sim_time"
            )
        if self.direction not in ("maximize", "minimize"):
            problems.append(
                f"sweep.direction = {self.direction!r} is invalid; allowed: maximize, minimize"
            )
        if self.pruner not in ("median", "none"):
            problems.append(f"sweep.pruner = {self.pruner!r} is invalid; allowed: median, none")
        if (
            isinstance(self.heartbeat_interval, int)
            and isinstance(self.grace_period, int)
            and self.grace_period <= self.heartbeat_interval
        ):
            problems.append(
                f"sweep.grace_period = {self.grace_period} must exceed sweep.heartbeat_interval = "
                f"{self.heartbeat_interval} (a live trial would look stale)"
            )
        if not problems and self.space() == {}:
            problems.append(
                "nothing to sweep: align_target, local_share and b1 are all fixed; give at least "
                "one a range [low, high] with low < high"
            )
        if problems:
            raise ConfigError(problems)

    def space(self) -> dict[str, tuple[float, float]]:
        """The swept parameters (name -> (low, high)), fixed ones left out."""
        out: dict[str, tuple[float, float]] = {}
        for name in ("align_target", "local_share", "b1"):
            r = getattr(self, name)
            if r is not None and r[0] < r[1]:
                out[name] = r
        return out

    def fixed(self) -> dict[str, float]:
        """The parameters given as one value (name -> value)."""
        out: dict[str, float] = {}
        for name in ("align_target", "local_share", "b1"):
            r = getattr(self, name)
            if r is not None and r[0] == r[1]:
                out[name] = r[0]
        return out


def _range(key: str, value: Any, kind: type, lo: float, hi: float | None, problems: list[str]):
    """``[low, high]`` or one value -> a checked ``(low, high)`` tuple (problems appended)."""
    what = "integers" if kind is int else "numbers"
    if kind is int:
        bounds = f">= {lo}" + ("" if hi is None else f" and <= {hi}")
    else:
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    allowed = f"allowed: [low, high] with low <= high, {what} {bounds}, or one such value"
    vals = list(value) if isinstance(value, list | tuple) else [value, value]
    ok_type = (
        (lambda v: isinstance(v, int) and not isinstance(v, bool))
        if kind is int
        else (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
    )
    if (
        len(vals) != 2
        or not all(ok_type(v) for v in vals)
        or vals[0] > vals[1]
        or vals[0] < lo
        or (hi is not None and vals[1] > hi)
    ):
        problems.append(f"{key} = {value!r} is invalid; {allowed}")
        return value
    return (kind(vals[0]), kind(vals[1]))


def load_sweep(
    config: str | Path | None, overrides: list[str] | None = None, seeds: int | None = None
) -> tuple[dict[str, Any], TrainConfig, SweepConfig]:
    """Read a config (preset name or path) with a ``[sweep]`` table; (base flat keys, base config,
    sweep).

    ``--set sweep.<key>=v`` overrides the table, ``seeds`` (``--seeds``) overrides ``sweep.seeds``;
    ``[ablate]`` is ignored (:func:`experiments.config.read_config`). Every trial's config (the ends
    of each range) is resolved here, so bad input fails before any work. Raises
    :class:`ConfigError` listing every problem.
    """
    src = read_config(config, overrides, command="sweep")
    table = dict(src.table)
    if seeds is not None:
        table["seeds"] = seeds
    allowed = [f.name for f in dataclasses.fields(SweepConfig)]
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            [f"unknown key(s) in [sweep]: {', '.join(unknown)}; allowed: {', '.join(allowed)}"]
        )
    sweep = SweepConfig(**table)
    flat, base = src.resolve()
    problems = [
        f"roles.{r}.align_target = {rc.align_target} would shadow the swept algo.align_target; "
        "remove it from the config"
        for r, rc in base.roles.items()
        if rc.align_target is not None and "align_target" in sweep.space()
    ]
    if problems:
        raise ConfigError(problems)
    for end in (0, 1):  # the corners of the space must resolve too (variants may contradict)
        params = {k: (r[end] if r is not None else None) for k, r in _ranges(sweep).items()}
        trial_config(flat, base, params, base.seed + sweep.seeds - 1)  # the last seed too
    return flat, base, sweep


def _ranges(sweep: SweepConfig) -> dict[str, tuple[float, float] | None]:
    return {"align_target": sweep.align_target, "local_share": sweep.local_share, "b1": sweep.b1}


def trial_config(
    flat: dict[str, Any], base: TrainConfig, params: dict[str, Any], seed: int
) -> TrainConfig:
    """The training config of one seed of a trial with ``params`` (D, w, b1; None: unchanged)."""
    keys: dict[str, Any] = {"seed": seed}
    if params.get("align_target") is not None:
        keys["algo.align_target"] = int(params["align_target"])
    if params.get("local_share") is not None:
        keys["reward.local_share"] = float(params["local_share"])
    if params.get("b1") is not None:
        keys["reward.beta"] = [float(params["b1"]), *base.reward.beta[1:]]
    return resolve(flat | keys)
