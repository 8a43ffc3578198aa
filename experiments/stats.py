"""Summary statistics over run directories (issue 6, items 1 and 7): pure functions, no plotting.

A *run dir* holds ``config.toml`` (the resolved config) and ``metrics.jsonl`` (one JSON object per
training step, DESIGN §6). :func:`find_runs` expands directories to the run dirs under them,
:func:`load_run` reads one (a missing or corrupt one raises ``ValueError`` naming the path and the
problem), :func:`~experiments.grouping.group_runs` groups them into lines (runs of one env,
variant and configuration, over seeds; see :mod:`experiments.grouping`), and
:func:`summary_table` computes one row per line:

========================  ========================================================================
column                    meaning
========================  ========================================================================
``config``                the keys that set the line apart from other lines of its variant
                          (``D=4, w=0.3``); only when some variant has several configurations
``n_seeds``               runs in the line (one per seed)
``steps``                 training steps of the longest run (``steps_min`` of the shortest)
``samples``               episodes of the longest run (``steps x B x K``)
``final_success``         ``eval/success_greedy`` at each run's last evaluation: mean over seeds,
                          with a 95% t confidence interval ``final_success_lo/hi`` (NaN for 1 seed)
``auc``                   area under the learning curve: mean of ``eval/success_greedy`` over a
                          run's evaluation points (a fraction in [0, 1]), mean over seeds
``steps_to_threshold``    first training step (1-based: updates done) at which
                          ``eval/oracle_fraction >= threshold``, mean over the seeds that got there
                          (None if none did); ``reached`` counts them
``reward_change_std``     std (ddof=0) of step-to-step changes of ``main/reward_mean``, mean over
                          seeds (lower: smoother training)
``worst_drawdown``        largest drop of the EMA-smoothed ``main/reward_mean`` below its running
                          maximum, mean over seeds (lower: fewer collapses)
``dk_<role>``             mean of ``<role>/calls_mean`` (calls d_k per episode) over steps and seeds
``align_duplicated``,     alignment counters per step, summed over specialist roles, mean over
``align_dropped``,        steps and seeds
``align_empty``
``sim_time``              ``eval/sim_time`` (simulated completion time of an episode) at the last
                          evaluation, mean over seeds; ``sim_time_ratio`` = / the baseline's
``diff_vs_baseline``      ``final_success`` minus the baseline's: the baseline variant's line of
                          the same env (when that variant has several lines, the one whose
                          differing keys have the row's values; none matches: None)
``p_value``               Welch t-test of final success vs the baseline variant
                          (``scipy.stats.ttest_ind(equal_var=False)``); None ("n/a") when either
                          side has < 2 seeds, both have zero variance, or the test is undefined
========================  ========================================================================

Example:
    >>> ema([0.0, 1.0, 1.0], 0.5)  # debiased: 0, (0.5*0 + 0.5*1)/(1-0.25) ...
    [0.0, 0.6666666666666666, 0.8571428571428571]
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from experiments.checkpoint import read_metrics
from experiments.grouping import Line, group_runs, matches
from experiments.tables import columns, format_markdown, write_summary

__all__ = [
    "Run",
    "find_runs",
    "load_run",
    "load_runs",
    "group_runs",
    "Line",
    "roles_of",
    "ema",
    "ema_weight",
    "specialists_of",
    "final_success",
    "auc",
    "steps_to_threshold",
    "reward_change_std",
    "worst_drawdown",
    "mean_ci",
    "welch_p",
    "summary_table",
    "write_summary",
    "format_markdown",
    "columns",
    "COUNTERS",
]

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
COUNTERS = ("align_duplicated", "align_dropped", "align_empty")
"""the alignment counters of a specialist role (DESIGN §6)"""
_NOT_ROLES = ("eval", "tool", "time")


# ---------------------------------------------------------------------------------- loading
@dataclass
class Run:
    """One loaded run dir."""

    path: Path
    """the run directory"""
    config: dict[str, Any]
    """``config.toml`` as nested dicts"""
    rows: list[dict[str, Any]]
    """metrics rows, one per training step, in step order"""
    truncated: bool = False
    """the last line of ``metrics.jsonl`` was cut off (a killed run) and was skipped"""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str(self.config.get("variant", "mgrpo"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def env_id(self) -> str:
        return str(self.config.get("env", {}).get("id", "?"))

    @property
    def batch(self) -> tuple[int, int]:
        """``(B, K)``: queries per step and group size."""
        algo = self.config.get("algo", {})
        return int(algo.get("queries_per_step", 0)), int(algo.get("group_size", 0))

    @property
    def steps(self) -> int:
        """Training steps done (rows logged)."""
        return len(self.rows)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``key`` over the rows that have it (finite values only); ``x`` is the
        1-based training step (updates done when the row was logged)."""
        xs, ys = [], []
        for i, r in enumerate(self.rows):
            v = r.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                xs.append(int(r.get("step", i + 1)))
                ys.append(float(v))
        return np.asarray(xs, dtype=int), np.asarray(ys, dtype=float)


def is_run_dir(path: Path) -> bool:
    """A run dir: a directory with both ``config.toml`` and ``metrics.jsonl``."""
    return (path / CONFIG).is_file() and (path / METRICS).is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run dirs named by ``paths``: a run dir itself, or every run dir under a directory (any
    depth, sorted). Raises ``ValueError`` for a missing path or one without any run dir."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ValueError(f"{p}: no such directory")
        if not p.is_dir():
            raise ValueError(f"{p}: not a directory (give a run dir or a dir holding run dirs)")
        if (p / CONFIG).is_file() or (p / METRICS).is_file():
            found.append(p)  # explicitly named: load_run says what is missing
            continue
        sub = sorted(m.parent for m in p.rglob(METRICS) if "plots" not in m.parent.parts)
        if not sub:
            raise ValueError(f"{p}: no run dirs found (a run dir holds {CONFIG} and {METRICS})")
        found.extend(sub)
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def load_run(path: str | Path) -> Run:
    """Load one run dir. Raises ``ValueError`` with the path and what is wrong (missing or
    unparsable config.toml, missing or corrupt metrics.jsonl, no rows)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path}: no such run directory")
    cfg_path, met_path = path / CONFIG, path / METRICS
    if not cfg_path.is_file():
        raise ValueError(f"{path}: not a run dir ({CONFIG} is missing)")
    if not met_path.is_file():
        raise ValueError(f"{path}: not a run dir ({METRICS} is missing; did the run start?)")
    try:
        config = tomllib.loads(cfg_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: corrupt config ({e})") from e
    try:
        rows = read_metrics(met_path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{met_path}: corrupt metrics (not text: {e})") from e
    except ValueError as e:
        raise ValueError(f"corrupt metrics: {e}") from e
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise ValueError(f"{met_path}: corrupt metrics (line {bad[0] + 1} is not a JSON object)")
    if not rows:
        raise ValueError(f"{met_path}: no metrics rows (the run logged no step)")
    n_lines = sum(1 for line in met_path.read_text().splitlines() if line.strip())
    rows.sort(key=lambda r: r.get("step", 0))
    return Run(path=path, config=config, rows=rows, truncated=n_lines > len(rows))


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """:func:`find_runs` then :func:`load_run` on each."""
    return [load_run(p) for p in find_runs(paths)]


def roles_of(runs: Iterable[Run]) -> list[str]:
    """Roles with a ``<role>/reward_mean`` in any row: ``main`` first, then specialists."""
    found: set[str] = set()
    for run in runs:
        for r in run.rows:
            for k in r:
                pre, _, name = k.partition("/")
                if name == "reward_mean" and pre not in _NOT_ROLES:
                    found.add(pre)
    return sorted(found, key=lambda r: (r != "main", r))


def specialists_of(runs: Iterable[Run]) -> list[str]:
    """Specialist roles: those that log ``<role>/calls_mean``."""
    found: set[str] = set()
    for run in runs:
        for r in run.rows:
            for k in r:
                pre, _, name = k.partition("/")
                if name == "calls_mean" and pre not in _NOT_ROLES:
                    found.add(pre)
    return sorted(found)


# ------------------------------------------------------------------------- per-run numbers
def ema(y: Sequence[float], weight: float) -> list[float]:
    """Debiased exponential moving average (as TensorBoard's smoothing): ``weight`` in [0, 1),
    0 = no smoothing."""
    out, acc = [], 0.0
    for i, v in enumerate(y):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight ** (i + 1)) if weight > 0 else v)
    return out


def ema_weight(n: int) -> float:
    """Smoothing weight for a curve of ``n`` points: 0.9 for long runs (>= 40 points), less for
    short ones so that the smoothed line does not lag behind the whole run."""
    return float(min(0.9, max(0.0, 1.0 - 4.0 / max(n, 1))))


def final_success(run: Run, key: str = "eval/success_greedy") -> float:
    """``key`` at the run's last evaluation (NaN if it never evaluated)."""
    _, y = run.series(key)
    return float(y[-1]) if len(y) else math.nan


def auc(run: Run, key: str = "eval/success_greedy") -> float:
    """Area under the learning curve as a fraction: mean of ``key`` over evaluation points."""
    _, y = run.series(key)
    return float(y.mean()) if len(y) else math.nan


def steps_to_threshold(run: Run, threshold: float = 0.9) -> int | None:
    """First 1-based step with ``eval/oracle_fraction >= threshold``; None if never."""
    x, y = run.series("eval/oracle_fraction")
    hit = np.nonzero(y >= threshold)[0]
    return int(x[hit[0]]) if len(hit) else None


def reward_change_std(run: Run, key: str = "main/reward_mean") -> float:
    """Std (ddof=0) of the step-to-step changes of ``key`` (NaN with < 2 points)."""
    _, y = run.series(key)
    return float(np.diff(y).std()) if len(y) >= 2 else math.nan


def worst_drawdown(run: Run, key: str = "main/reward_mean", weight: float | None = None) -> float:
    """Largest drop of the EMA-smoothed ``key`` below its running maximum (>= 0).

    ``weight``: EMA weight (default :func:`ema_weight` of the run's length)."""
    _, y = run.series(key)
    if not len(y):
        return math.nan
    s = np.asarray(ema(y, ema_weight(len(y)) if weight is None else weight))
    return float((np.maximum.accumulate(s) - s).max())


def _mean_key(run: Run, key: str) -> float:
    _, y = run.series(key)
    return float(y.mean()) if len(y) else math.nan


# ---------------------------------------------------------------------------- across seeds
def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its t confidence interval across seeds. NaNs are
    ignored; with one value the interval is ``(nan, nan)``; no values: all NaN."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p-value of ``a`` vs ``b``; None when undefined (a side with < 2
    values, both sides with zero variance, or a NaN result)."""
    a = np.asarray([x for x in a if math.isfinite(x)], dtype=float)
    b = np.asarray([x for x in b if math.isfinite(x)], dtype=float)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return None
    p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def _nanmean(values: Iterable[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def summary_table(
    runs: Iterable[Run], baseline: str = "mgrpo", threshold: float = 0.9
) -> list[dict[str, Any]]:
    """One row per line (:func:`~experiments.grouping.group_runs`: env, variant and config);
    the columns are described in the module docstring. ``dk_<role>`` columns exist for the
    specialist roles of the env. Each row also holds ``line`` (its label) and ``baseline_line``
    (the label of the line it is compared against, or None); neither is written."""
    groups = group_runs(runs)
    several = any(line.differs for line in groups)
    table: list[dict[str, Any]] = []
    for line, rs in groups.items():
        row = _line_row(line, rs, threshold)
        if several:
            row = {"env": row.pop("env"), "variant": row.pop("variant"), "config": line.config,
                   **row}  # fmt: skip
        table.append(row)
    # comparisons with the baseline line of the same env
    for row, line in zip(table, groups, strict=True):
        b = _baseline_row(line, groups, table, baseline)
        row["baseline_line"] = None if b is None else b["line"]
        if b is None:
            row["sim_time_ratio"] = row["diff_vs_baseline"] = row["p_value"] = None
            continue
        row["sim_time_ratio"] = row["sim_time"] / b["sim_time"] if b["sim_time"] else None
        row["diff_vs_baseline"] = row["final_success"] - b["final_success"]
        row["p_value"] = None if row is b else welch_p(row["_final"], b["_final"])
    for row in table:
        row["final_success_seeds"] = row.pop("_final")
    return table


def _baseline_row(
    line: Line, groups: dict[Line, list[Run]], table: list[dict[str, Any]], baseline: str
) -> dict[str, Any] | None:
    """The row of ``line``'s baseline: the only ``baseline`` line of its env, or the one whose
    differing keys have ``line``'s values (None if none or several match)."""
    lines = list(groups)
    cands = [i for i, b in enumerate(lines) if b.env == line.env and b.variant == baseline]
    if len(cands) > 1:
        cands = [i for i in cands if matches(lines[i], groups[line][0])]
    return table[cands[0]] if len(cands) == 1 else None


def _line_row(line: Line, rs: list[Run], threshold: float) -> dict[str, Any]:
    fs = [final_success(r) for r in rs]
    m, lo, hi = mean_ci(fs)
    reached = [s for s in (steps_to_threshold(r, threshold) for r in rs) if s is not None]
    spec = specialists_of(rs)
    B, K = max((r.batch for r in rs), key=lambda bk: bk[0] * bk[1])
    row: dict[str, Any] = {
        "env": line.env,
        "variant": line.variant,
        "n_seeds": len(rs),
        "steps": max(r.steps for r in rs),
        "steps_min": min(r.steps for r in rs),
        "samples": max(r.steps for r in rs) * B * K,
        "final_success": m,
        "final_success_lo": lo,
        "final_success_hi": hi,
        "final_success_sampled": _nanmean(final_success(r, "eval/success") for r in rs),
        "auc": _nanmean(auc(r) for r in rs),
        "steps_to_threshold": float(np.mean(reached)) if reached else None,
        "reached": len(reached),
        "reward_change_std": _nanmean(reward_change_std(r) for r in rs),
        "worst_drawdown": _nanmean(worst_drawdown(r) for r in rs),
    }
    for role in spec:
        row[f"dk_{role}"] = _nanmean(_mean_key(r, f"{role}/calls_mean") for r in rs)
    for c in COUNTERS:
        per_run = []
        for r in rs:
            tot = [sum(float(x.get(f"{s}/{c}", 0.0)) for s in spec) for x in r.rows]
            per_run.append(float(np.mean(tot)) if spec else math.nan)
        row[c] = _nanmean(per_run)
    row["sim_time"] = _nanmean(final_success(r, "eval/sim_time") for r in rs)
    for extra in ("eval/category_error_rate", "eval/constraints_kept"):
        if any(extra in x for r in rs for x in r.rows):
            row["final_" + extra.split("/")[1]] = _nanmean(final_success(r, extra) for r in rs)
    row["line"] = line.label
    row["_final"] = fs  # per-seed values, for the comparisons; not written
    return row
